"""The IVR: call flows as YAML state machines (dialplans/*.yaml), validated with file:line:col
errors, run on the engine's calls, reloaded atomically.

    holder = FlowsHolder("dialplans", Checks(queues=...))      # raises FlowErrors on bad files
    route = IvrRoute(holder, FlowRunner(queue_port, IvrStore(connect)))
    registry.handler = route                                     # route(call, resumed)
"""
from engine.ivr.loader import Checks, FlowErrors, build_flowset, load_flows, read_flow
from engine.ivr.model import Flow, FlowSet, next_node
from engine.ivr.ports import QueueOutcome, QueuePort, QueueStatus
from engine.ivr.route import FlowsHolder, IvrRoute
from engine.ivr.runner import FlowRunner, RunnerSettings
from engine.ivr.store import IvrStore

__all__ = ["Checks", "Flow", "FlowErrors", "FlowRunner", "FlowSet", "FlowsHolder", "IvrRoute",
           "IvrStore", "QueueOutcome", "QueuePort", "QueueStatus", "RunnerSettings", "build_flowset", "load_flows",
           "next_node", "read_flow"]
