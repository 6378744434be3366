"""One FreeSWITCH node's long-lived Event Socket connection (API stub, implementation follows)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import gevent.event

from engine.esl.protocol import Event


@dataclass(frozen=True)
class NodeConfig:
    name: str
    host: str = "127.0.0.1"
    port: int = 8021
    password: str = "ClueCon"
    events: tuple[str, ...] = ()
    custom: tuple[str, ...] = ()
    command_timeout: float = 5.0
    connect_timeout: float = 3.0
    heartbeat_timeout: float = 60.0
    backoff_initial: float = 0.2
    backoff_max: float = 10.0


class Node:
    def __init__(self, config: NodeConfig, on_event: Callable[[Event], None],
                 on_up: Callable[["Node"], None] | None = None,
                 on_down: Callable[["Node", str], None] | None = None) -> None:
        raise NotImplementedError

    def start(self) -> None: ...
    def stop(self) -> None: ...
    @property
    def up(self) -> bool: ...
    def wait_up(self, timeout: float | None = None) -> bool: ...
    def api(self, cmd: str, timeout: float | None = None) -> str: ...
    def bgapi(self, cmd: str, timeout: float | None = None) -> str: ...
    def bgapi_async(self, cmd: str) -> gevent.event.AsyncResult: ...
    def execute(self, uuid: str, app: str, arg: str = "", *, event_uuid: str, lock: bool = True) -> None: ...
    def hangup(self, uuid: str, cause: str = "NORMAL_CLEARING") -> None: ...
