"""The `callrouter` command line (click): one module per command family, registered here."""
from __future__ import annotations

import gevent
from gevent import monkey

# Greenlet parent/spawn-tree bookkeeping costs ~13 us and a few hundred bytes per greenlet (one
# per call and per command); nothing in the engine reads it.
gevent.config.track_greenlet_tree = False
monkey.patch_all()  # first: the daemon, psycopg and subprocesses all cooperate on gevent's loop

import importlib  # noqa: E402

import click  # noqa: E402

# Each module defines one click command or group as its COMMAND attribute.
_COMMAND_MODULES = (
    "engine.cli.run",
    "engine.cli.demo",
    "engine.cli.simulate",
    "engine.cli.check",
    "engine.cli.db",
    "engine.cli.status",
    "engine.cli.report",
    "engine.cli.staffing",
    "engine.cli.top",
    "engine.cli.reload",
    "engine.cli.campaign",
    "engine.cli.agents",
    "engine.cli.queues",
    "engine.cli.calls",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="callrouter")
def main() -> None:
    """callrouter: IVR, skills-based ACD and outbound dialer for FreeSWITCH.

    The engine connects to FreeSWITCH over the inbound Event Socket and takes control of the
    calls its dialplan parks for it. Start with `callrouter demo` (built-in simulator and
    database, no setup), then `callrouter run --freeswitch HOST:PORT:PASSWORD` against a switch.
    """


for _name in _COMMAND_MODULES:
    main.add_command(importlib.import_module(_name).COMMAND)
