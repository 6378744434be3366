"""The call-flow model: plain frozen dataclasses built by the loader, read by the runner.

A Flow is a state machine: named nodes, each an action whose outcomes name the next node
(`edges`). `next_node` is the whole transition function. A FlowSet is one validated snapshot
of every flow file, with the entry points (the `callrouter_entry` values the FreeSWITCH
dialplan sets) mapped to flows; a reload builds a new FlowSet and never changes an old one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Union

from engine.ivr.expr import Node as Expr
from engine.ivr.schedule import Schedule


@dataclass(frozen=True)
class Say:
    """The `say` application: a value read out by the language's say module."""

    template: str  # text with ${variables}; what is read out must fit `kind`
    kind: str  # number | digits | currency | time | date
    language: str


PromptItem = Union[str, Say]  # a file, tone_stream://, silence_stream://, or a Say
Prompt = tuple[PromptItem, ...]


@dataclass(frozen=True)
class Node:
    name: str
    where: str  # file:line:col, for logs
    edges: Mapping[str, str]  # outcome -> next node; a node with none ends the flow


@dataclass(frozen=True)
class Play(Node):
    prompt: Prompt


@dataclass(frozen=True)
class Menu(Node):
    """Options by digit (the digit is the outcome); `failure` after the tries run out."""

    prompt: Prompt
    invalid_prompt: Prompt
    timeout_prompt: Prompt
    tries: int
    timeout_ms: int


@dataclass(frozen=True)
class Collect(Node):
    prompt: Prompt
    invalid_prompt: Prompt
    into: str
    min_digits: int
    max_digits: int
    terminators: str
    pattern: str
    tries: int
    timeout_ms: int
    digit_timeout_ms: int


@dataclass(frozen=True)
class SetVars(Node):
    values: tuple[tuple[str, str], ...]  # name, template


@dataclass(frozen=True)
class Branch(Node):
    """The first case whose condition holds wins (outcome `case<i>`), else outcome `else`."""

    cases: tuple[tuple[str, Expr], ...]  # condition as written, parsed


@dataclass(frozen=True)
class ScheduleCheck(Node):
    schedule: str


@dataclass(frozen=True)
class Queue(Node):
    queue: str
    skills: tuple[str, ...]
    priority: int
    max_wait: float
    announce: Prompt  # read out with ${queue_position} and ${queue_wait_minutes} set
    announce_every: float
    exit_keys: str = ""  # DTMF keys that leave the queue; each is also the outcome naming its node


@dataclass(frozen=True)
class Transfer(Node):
    extension: str = ""
    context: str = ""
    number: str = ""
    gateway: str = ""
    ring_seconds: int = 30
    flow: str = ""


@dataclass(frozen=True)
class Record(Node):
    prompt: Prompt
    beep: str
    mailbox: str
    max_seconds: int


@dataclass(frozen=True)
class Question:
    id: str
    prompt: Prompt
    answers: str  # the digits allowed


@dataclass(frozen=True)
class Survey(Node):
    survey: str
    questions: tuple[Question, ...]
    invalid_prompt: Prompt
    tries: int
    timeout_ms: int


@dataclass(frozen=True)
class Callback(Node):
    prompt: Prompt
    confirm: Prompt
    accept: str
    queue: str
    timeout_ms: int


@dataclass(frozen=True)
class Lookup(Node):
    query: str  # a named query of the flow, or ""
    url: str  # an HTTP endpoint template, or ""
    into: tuple[tuple[str, str], ...]  # variable, result field
    timeout: float


@dataclass(frozen=True)
class Hangup(Node):
    prompt: Prompt
    cause: str


# Nodes that wait for the caller (or for someone): a loop through none of them would spin.
INPUT_NODES = (Menu, Collect, Queue, Record, Survey, Callback)


@dataclass(frozen=True)
class Query:
    """A parameterised SQL query named in YAML: the text is fixed, parameters are variables."""

    name: str
    sql: str  # with %(variable)s placeholders, passed to psycopg as parameters
    params: tuple[str, ...]


@dataclass(frozen=True)
class Flow:
    name: str
    file: str
    start: str
    nodes: Mapping[str, Node]
    entries: tuple[str, ...] = ()
    default: bool = False
    language: str = "en"
    timezone: str = "UTC"
    variables: Mapping[str, str] = field(default_factory=dict)
    schedules: Mapping[str, Schedule] = field(default_factory=dict)
    queries: Mapping[str, Query] = field(default_factory=dict)
    on_error: str = ""  # where a node that fails unexpectedly goes (else: apology and hangup)


@dataclass(frozen=True)
class FlowSet:
    flows: Mapping[str, Flow]
    entries: Mapping[str, str]  # callrouter_entry -> flow name
    default: str = ""  # the flow for entries nobody declared ("" = apologise and hang up)
    version: str = ""  # a digest of the files, for logs and the admin API

    def for_entry(self, entry: str) -> Flow | None:
        name = self.entries.get(entry) or self.default
        return self.flows.get(name) if name else None

    def queues(self) -> tuple[str, ...]:
        """Every queue the flows of this set can send callers to."""
        return tuple(sorted({node.queue for flow in self.flows.values() for node in flow.nodes.values()
                             if isinstance(node, Queue)}))


def next_node(node: Node, outcome: str) -> str | None:
    """Where the flow goes when `node` ends with `outcome` (None: the flow ends here)."""
    return node.edges.get(outcome)
