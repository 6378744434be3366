"""The engine's exception tree: one root, families under it, translated at the boundaries."""


class CallRouterError(Exception):
    """Root of every error the engine raises on purpose."""


class ConfigError(CallRouterError):
    """A configuration or YAML file is wrong; the message names the place and what to fix."""


class EslError(CallRouterError):
    """Something went wrong talking to FreeSWITCH over the Event Socket."""


class NotConnected(EslError):
    """The Event Socket connection to the node is down; the command was not sent."""


class CommandTimeout(EslError):
    """FreeSWITCH did not answer a command within its bound."""


class CommandFailed(EslError):
    """FreeSWITCH answered a command with -ERR."""


class CallGone(CallRouterError):
    """The channel hung up (or vanished) while the engine was waiting on it."""


class UnsafeValue(CallRouterError):
    """A value cannot be put on an ESL command line safely (newline, NUL, ...)."""


class DatabaseError(CallRouterError):
    """PostgreSQL could not be started, reached or migrated."""
