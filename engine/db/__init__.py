"""PostgreSQL for the engine: the embedded server by default, an external one by DSN, and the
versioned SQL migrations (migrations/NNNN_name.sql) applied at start. CDRs, queue log, agents and
campaigns keep their own tables; this package only provides the database they live in."""
from engine.db.server import Database, embedded_dsn
from engine.db.migrate import migrate, applied_versions

__all__ = ["Database", "embedded_dsn", "migrate", "applied_versions"]
