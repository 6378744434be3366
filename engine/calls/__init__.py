"""The call model: one Leg per FreeSWITCH channel, one Call (greenlet + inbox) per call the
engine controls, and the registry that routes events to them by Unique-ID and adopts calls
that outlived an outage or a restart."""
from engine.calls.call import Call, OriginateFailed
from engine.calls.leg import Leg
from engine.calls.registry import CallRegistry
from engine.calls.stats import CallStats

__all__ = ["Call", "CallRegistry", "CallStats", "Leg", "OriginateFailed"]
