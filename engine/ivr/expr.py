"""The `branch` node's expression language: a tokenizer, a recursive-descent parser and an
evaluator over a dict of variables. No Python eval: only what is written here exists.

    caller_id starts_with '+44'            -> not an operator; use starts_with(caller_id, '+44')
    agents_available('sales') > 0 and estimated_wait('sales') < 120
    tier in ['gold', 'platinum'] or not (dnis == '8005550100')
    time_between('09:00', '17:30') and weekday() in ['mon', 'tue']

Values are numbers, strings, booleans and lists of literals. Variables hold text (channel data,
DTMF, lookup results); a comparison between a number and text that reads as a number compares
numbers, so `digits > 5` means what an operator expects. A variable nobody set is ''.
Errors found while parsing are ExprError with the offset into the text; evaluation never raises
anything but EvalError (an unknown queue, a function failing), which the runner treats as false.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Union

from engine.errors import ConfigError


class ExprError(ConfigError):
    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


class EvalError(Exception):
    """An expression could not be evaluated at run time (a function failed)."""


# --------------------------------------------------------------------------- tokens
_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,|-)
""", re.VERBOSE)
_KEYWORDS = {"and", "or", "not", "in", "true", "false"}


@dataclass(frozen=True)
class Token:
    kind: str  # number, string, name, keyword, op, end
    text: str
    offset: int


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            ch = text[pos]
            if ch in "'\"":
                raise ExprError(f"text opened with {ch} is never closed", pos)
            raise ExprError(f"unexpected character {ch!r}", pos)
        kind = match.lastgroup or ""
        value = match.group()
        if kind != "ws":
            if kind == "name" and value in _KEYWORDS:
                kind = "keyword"
            tokens.append(Token(kind, value, pos))
        pos = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


# --------------------------------------------------------------------------- syntax tree
@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Var:
    name: str
    offset: int


@dataclass(frozen=True)
class ListOf:
    items: tuple["Node", ...]


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple["Node", ...]
    offset: int


@dataclass(frozen=True)
class Not:
    operand: "Node"


@dataclass(frozen=True)
class Neg:
    operand: "Node"


@dataclass(frozen=True)
class BoolOp:
    op: str  # and | or
    left: "Node"
    right: "Node"


@dataclass(frozen=True)
class Compare:
    op: str  # == != < <= > >= in "not in"
    left: "Node"
    right: "Node"


Node = Union[Literal, Var, ListOf, Call, Not, Neg, BoolOp, Compare]


@dataclass(frozen=True)
class Signature:
    """A function the language offers, as the loader checks its calls."""

    arity: tuple[int, ...]
    names: str = ""  # what the first argument names ("queue", "schedule"): checked at load time


SIGNATURES: dict[str, Signature] = {
    "agents_available": Signature((1,), "queue"),
    "calls_waiting": Signature((1,), "queue"),
    "estimated_wait": Signature((1,), "queue"),  # seconds
    "open": Signature((1,), "schedule"),
    "time_between": Signature((2,)),  # 'HH:MM', 'HH:MM' on the flow's clock; may span midnight
    "weekday": Signature((0,)),  # 'mon' .. 'sun' on the flow's clock
    "len": Signature((1,)),
    "starts_with": Signature((2,)),
    "ends_with": Signature((2,)),
}


class _Parser:
    def __init__(self, text: str, functions: Mapping[str, Signature]) -> None:
        self.tokens = tokenize(text)
        self.pos = 0
        self.functions = functions

    @property
    def tok(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def expect(self, text: str, what: str) -> Token:
        if self.tok.text != text or self.tok.kind not in ("op", "keyword"):
            raise ExprError(f"expected {what}, found {self._describe(self.tok)}", self.tok.offset)
        return self.take()

    @staticmethod
    def _describe(tok: Token) -> str:
        return "the end of the expression" if tok.kind == "end" else f"'{tok.text}'"

    def parse(self) -> Node:
        if self.tok.kind == "end":
            raise ExprError("the condition is empty", 0)
        node = self.or_()
        if self.tok.kind != "end":
            raise ExprError(f"unexpected {self._describe(self.tok)} (missing 'and' or 'or'?)", self.tok.offset)
        return node

    def or_(self) -> Node:
        node = self.and_()
        while self.tok.kind == "keyword" and self.tok.text == "or":
            self.take()
            node = BoolOp("or", node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.tok.kind == "keyword" and self.tok.text == "and":
            self.take()
            node = BoolOp("and", node, self.not_())
        return node

    def not_(self) -> Node:
        if self.tok.kind == "keyword" and self.tok.text == "not":
            self.take()
            return Not(self.not_())
        return self.comparison()

    def comparison(self) -> Node:
        left = self.unary()
        tok = self.tok
        if tok.kind == "op" and tok.text in ("==", "!=", "<", "<=", ">", ">="):
            self.take()
            op = tok.text
        elif tok.kind == "keyword" and tok.text == "in":
            self.take()
            op = "in"
        elif tok.kind == "keyword" and tok.text == "not" and self.tokens[self.pos + 1].text == "in":
            self.pos += 2
            op = "not in"
        else:
            return left
        node = Compare(op, left, self.unary())
        if self.tok.kind == "op" and self.tok.text in ("==", "!=", "<", "<=", ">", ">="):
            raise ExprError("comparisons cannot be chained; join them with 'and'", self.tok.offset)
        return node

    def unary(self) -> Node:
        if self.tok.kind == "op" and self.tok.text == "-":
            self.take()
            return Neg(self.unary())
        return self.atom()

    def atom(self) -> Node:
        tok = self.take()
        if tok.kind == "number":
            return Literal(float(tok.text) if "." in tok.text else int(tok.text))
        if tok.kind == "string":
            return Literal(re.sub(r"\\(.)", r"\1", tok.text[1:-1]))
        if tok.kind == "keyword" and tok.text in ("true", "false"):
            return Literal(tok.text == "true")
        if tok.kind == "name":
            if self.tok.kind == "op" and self.tok.text == "(":
                return self.call(tok)
            return Var(tok.text, tok.offset)
        if tok.kind == "op" and tok.text == "(":
            node = self.or_()
            self.expect(")", "')' to close the '('")
            return node
        if tok.kind == "op" and tok.text == "[":
            items: list[Node] = []
            while not (self.tok.kind == "op" and self.tok.text == "]"):
                item = self.unary()
                if not isinstance(item, (Literal, Neg)):
                    raise ExprError("a list may only hold numbers and quoted text", tok.offset)
                items.append(item)
                if self.tok.text != ",":
                    break
                self.take()
            self.expect("]", "']' to close the list")
            return ListOf(tuple(items))
        raise ExprError(f"expected a value, found {self._describe(tok)}", tok.offset)

    def call(self, name: Token) -> Node:
        function = self.functions.get(name.text)
        if function is None:
            known = ", ".join(sorted(self.functions))
            raise ExprError(f"unknown function '{name.text}' (known: {known})", name.offset)
        self.take()  # (
        args: list[Node] = []
        while not (self.tok.kind == "op" and self.tok.text == ")"):
            args.append(self.or_())
            if self.tok.text != ",":
                break
            self.take()
        self.expect(")", f"')' to close {name.text}(")
        if len(args) not in function.arity:
            counts = " or ".join(str(n) for n in function.arity)
            raise ExprError(f"{name.text}() takes {counts} argument(s), not {len(args)}", name.offset)
        return Call(name.text, tuple(args), name.offset)


def parse(text: str, functions: Mapping[str, Signature] = SIGNATURES) -> Node:
    """The syntax tree of `text`, or ExprError saying what is wrong and where."""
    if not isinstance(text, str):
        raise ExprError("a condition must be text", 0)
    return _Parser(text, functions).parse()


def walk(node: Node):
    """Every node of a tree (for load-time checks of variables and queue names)."""
    yield node
    for child in _children(node):
        yield from walk(child)


def _children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, (Not, Neg)):
        return (node.operand,)
    if isinstance(node, (BoolOp, Compare)):
        return (node.left, node.right)
    if isinstance(node, (ListOf, Call)):
        return node.items if isinstance(node, ListOf) else node.args
    return ()


# --------------------------------------------------------------------------- evaluation
def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value) if re.fullmatch(r"\s*-?\d+(\.\d+)?\s*", value) else None
        except ValueError:  # pragma: no cover - the pattern admits only numbers
            return None
    return None


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value not in ("", "0", "false")
    return bool(value)


def _equal(a: Any, b: Any) -> bool:
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None:
        return na == nb
    if isinstance(a, bool) or isinstance(b, bool):
        return _truthy(a) == _truthy(b)
    return str(a) == str(b) if not isinstance(a, list) and not isinstance(b, list) else a == b


def _order(op: str, a: Any, b: Any) -> bool:
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None:
        a, b = na, nb
    elif isinstance(a, str) and isinstance(b, str):
        pass
    else:
        return False  # text against a number that is not one: neither smaller nor larger
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def evaluate(node: Node, variables: Mapping[str, Any], functions: Mapping[str, Callable[..., Any]]) -> Any:
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Var):
        return variables.get(node.name, "")
    if isinstance(node, ListOf):
        return [evaluate(item, variables, functions) for item in node.items]
    if isinstance(node, Neg):
        value = _number(evaluate(node.operand, variables, functions))
        if value is None:
            raise EvalError("'-' needs a number")
        return -value
    if isinstance(node, Not):
        return not _truthy(evaluate(node.operand, variables, functions))
    if isinstance(node, BoolOp):
        left = _truthy(evaluate(node.left, variables, functions))
        if node.op == "and":
            return left and _truthy(evaluate(node.right, variables, functions))
        return left or _truthy(evaluate(node.right, variables, functions))
    if isinstance(node, Compare):
        a = evaluate(node.left, variables, functions)
        b = evaluate(node.right, variables, functions)
        if node.op in ("in", "not in"):
            if isinstance(b, list):
                found = any(_equal(a, item) for item in b)
            else:
                found = str(a) in str(b)
            return found if node.op == "in" else not found
        if node.op == "==":
            return _equal(a, b)
        if node.op == "!=":
            return not _equal(a, b)
        return _order(node.op, a, b)
    if isinstance(node, Call):
        args = [evaluate(arg, variables, functions) for arg in node.args]
        try:
            return functions[node.name](*args)
        except EvalError:
            raise
        except Exception as exc:
            raise EvalError(f"{node.name}() failed: {exc}") from exc
    raise EvalError(f"cannot evaluate {type(node).__name__}")  # pragma: no cover - every node kind is above


def test(node: Node, variables: Mapping[str, Any], functions: Mapping[str, Callable[..., Any]]) -> bool:
    """The expression as a condition."""
    return _truthy(evaluate(node, variables, functions))
