"""The engine's side of FreeSWITCH's inbound Event Socket: one long-lived `Node` per switch
(connect, authenticate, subscribe by name, reconnect, correlate replies), the `Event` frames
it delivers, and `commands`, the pure builders and escaping for every command line.
"""
from engine.esl import commands
from engine.esl.node import Node, NodeConfig
from engine.esl.protocol import Event, ProtocolError

__all__ = ["Event", "Node", "NodeConfig", "ProtocolError", "commands"]
