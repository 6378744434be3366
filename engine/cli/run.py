"""`callrouter run`: the daemon."""
from __future__ import annotations

import logging
from pathlib import Path

import click

from engine.cli.common import build_config, config_options, friendly_errors
from engine.errors import ConfigError
from engine.logs import setup_logging


@click.command("run")
@config_options
@click.option("--freeswitch", "freeswitch", multiple=True, metavar="HOST:PORT:PASSWORD",
              help="A FreeSWITCH node's inbound Event Socket; repeat for several nodes. "
                   "Replaces the config's freeswitch list.")
@click.option("--dialplans", type=click.Path(file_okay=False, path_type=Path),
              help="The directory of call-flow YAML files [default: ./dialplans].")
@click.option("--metrics-address", metavar="HOST:PORT",
              help="Serve Prometheus's /metrics here [default: metrics.listen, 127.0.0.1:9180].")
@friendly_errors
def COMMAND(config_path: Path | None, data_dir: Path | None, freeswitch: tuple[str, ...],
            dialplans: Path | None, metrics_address: str | None) -> None:
    """Run the engine: connect to FreeSWITCH and control the calls its dialplan parks.

    Calls are picked up when FreeSWITCH parks them with the channel variable callrouter_entry set
    (see freeswitch/ for the dialplan). SIGTERM or Ctrl-C stops taking new calls and lets the ones
    in progress finish (shutdown_grace_seconds); SIGHUP reloads.

    \b
    Quick start without a config file:
      callrouter run --freeswitch 127.0.0.1:8021:ClueCon
    """
    from engine.app import Engine

    config = build_config(config_path, data_dir, freeswitch, dialplans=dialplans, metrics_listen=metrics_address)
    if not config.freeswitch:
        raise ConfigError("no FreeSWITCH node to connect to: give --freeswitch HOST:PORT:PASSWORD "
                          "or a freeswitch: list in --config")
    config.check_secrets()
    setup_logging(config.log_level, config.log_format)
    engine = Engine(config)
    engine.start()
    logging.getLogger("engine").info("engine %s running; %d node(s)", engine.instance_id, len(engine.nodes))
    engine.run_until_signalled()
