"""The call model: one Leg per FreeSWITCH channel, one Call per call the engine controls (an
inbox, and a greenlet while it has more to do than wait for its inbox: see Suspend), and the
registry that routes events to them by Unique-ID and adopts calls that outlived an outage or a
restart."""
from engine.calls.call import Call, OriginateFailed
from engine.calls.leg import Leg
from engine.calls.registry import CallRegistry
from engine.calls.stats import CallStats

__all__ = ["Call", "CallRegistry", "CallStats", "Leg", "OriginateFailed"]
