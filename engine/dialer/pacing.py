"""Pacing: how many calls to place now. Pure functions; the live layer and the what-if driver
call them on every change (an agent freed, a call answered or failed) and log each decision.

Predictive (`pace`): the answers of the calls in flight plus N new ones (binomial, at an upper
confidence bound of the answer probability) meet the agents free by the time they answer (idle
now, plus each talking agent's chance to finish within the answer delay, plus wrap-ups ending
by then). N is the most calls whose expected abandons per expected live answer stay within the
period's target rate. That target spends the period's budget deliberately: the upper confidence
bound (one-sided, 1 - delta) of the period's final abandon rate, with the abandons so far and
the live answers still to come at that rate, must stay under the cap. With too little data, or
once the target falls under a tenth of the cap, it dials progressively: one call per idle agent.

Baselines for what-if and bench: fixed ratio, and a dial-level controller after VICIdial's
ADAPT methods (raise the level while the drop rate is under target, lower it above).
"""
from __future__ import annotations

import functools
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import NamedTuple

log = logging.getLogger(__name__)

_NORMAL = NormalDist()
_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)
IDLE, TALKING, WRAP_UP = "idle", "talking", "wrap-up"


class AgentView(NamedTuple):
    """One logged-in agent as the pacing sees it (a tuple: one per agent per decision)."""
    state: str                       # idle / talking / wrap-up
    seconds_in_state: float = 0.0
    wrap_up_left: float = 0.0        # for wrap-up: seconds until ready again


@dataclass(frozen=True)
class PacingInputs:
    agents: tuple[AgentView, ...]
    in_flight: int                   # calls placed, not yet answered or failed
    attempts: int                    # resolved attempts so far (the sample the estimates come from)
    live_answers: int                # of those, answered by a person
    handle_time: float               # mean seconds from connect to agent ready (talk + wrap-up)
    handle_samples: int
    answer_delay: float              # mean seconds from dial to the end of a live greeting
    period_live_answers: float       # in the current abandon period
    period_abandoned: float
    period_seconds_left: float
    live_answers_per_second: float   # recent rate, to project the period's remaining live answers
    cap: float = 0.03
    delta: float = 0.05              # allowed chance of ending the period over the cap
    min_attempts: int = 100
    min_handle_samples: int = 20


@dataclass(frozen=True)
class PacingDecision:
    calls: int
    method: str                      # predictive / progressive
    reason: str
    answer_probability: float        # the upper bound used
    agents_free_expected: float
    target_abandon_rate: float
    predicted_abandon_rate: float
    inputs: PacingInputs = field(repr=False)

    def to_dict(self) -> dict:
        record = asdict(self)
        inputs = record.pop("inputs")
        inputs["agents"] = {state: sum(1 for a in self.inputs.agents if a.state == state)
                            for state in (IDLE, TALKING, WRAP_UP)}
        return {**record, "inputs": inputs}


def wilson_upper(successes: int, trials: int, z: float) -> float:
    if trials == 0:
        return 1.0
    p = successes / trials
    centre = p + z * z / (2 * trials)
    spread = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return min(1.0, (centre + spread) / (1 + z * z / trials))


def target_rate(inputs: PacingInputs, z: float) -> float:
    """The largest per-answer abandon rate r for the rest of the period such that
    A + rR + z sqrt(rR) <= cap (L + R): abandons so far A, live answers so far L and to come R."""
    remaining = max(0.0, inputs.live_answers_per_second * inputs.period_seconds_left)
    allowed = inputs.cap * (inputs.period_live_answers + remaining) - inputs.period_abandoned
    if remaining <= 0 or allowed <= 0:
        return 0.0
    # Solve R r + z sqrt(R r) - allowed = 0 for s = sqrt(R r) >= 0.
    s = (-z + math.sqrt(z * z + 4 * allowed)) / 2
    return min(inputs.cap, s * s / remaining)


def expected_overflow(answers_mean: float, answers_var: float, free_mean: float, free_var: float) -> float:
    """E[(X - F)+] for answers X and free agents F, in the normal approximation."""
    mu = answers_mean - free_mean
    sigma = math.sqrt(answers_var + free_var + 0.25)  # +0.25: the counts are whole numbers
    x = mu / sigma
    return mu * 0.5 * math.erfc(-x / _SQRT2) + sigma * math.exp(-0.5 * x * x) / _SQRT2PI


@functools.lru_cache(maxsize=16)
def _z(delta: float) -> float:
    """The one-sided normal quantile for `delta` (the same few deltas, every decision)."""
    return _NORMAL.inv_cdf(1 - delta)


def progressive_calls(agents: tuple[AgentView, ...], in_flight: int) -> int:
    """One call per idle agent, counting the calls already ringing for them."""
    return max(0, sum(1 for a in agents if a.state == IDLE) - in_flight)


def pace(inputs: PacingInputs) -> PacingDecision:
    z = _z(inputs.delta)
    progressive = progressive_calls(inputs.agents, inputs.in_flight)
    p_hi = wilson_upper(inputs.live_answers, inputs.attempts, z)

    def fallback(reason: str, target: float = 0.0) -> PacingDecision:
        return _logged(PacingDecision(progressive, "progressive", reason, p_hi, 0.0, target, 0.0, inputs))

    if inputs.attempts < inputs.min_attempts or inputs.handle_samples < inputs.min_handle_samples:
        return fallback(f"too little data ({inputs.attempts} attempts, {inputs.handle_samples} handled calls)")
    target = target_rate(inputs, z)
    if target < inputs.cap / 10:
        return fallback(f"abandon budget nearly spent (target rate {target:.4f})", target)

    horizon = inputs.answer_delay
    free_mean = free_var = 0.0
    finish = 1.0 - math.exp(-horizon / max(inputs.handle_time, 1.0))  # memoryless handle times
    for agent in inputs.agents:
        if agent.state == IDLE:
            free_mean += 1.0
        elif agent.state == WRAP_UP:
            free_mean += agent.wrap_up_left <= horizon
        else:
            free_mean += finish
            free_var += finish * (1.0 - finish)

    def predicted(calls: int) -> float:
        n = inputs.in_flight + calls
        if n == 0:
            return 0.0
        mean = n * p_hi
        return expected_overflow(mean, mean * (1.0 - p_hi), free_mean, free_var) / mean

    # The predicted rate grows with N: the largest N within the target, by bisection.
    low, high = 0, max(1, math.ceil(2 * len(inputs.agents) / max(p_hi, 0.01)))
    if predicted(low) > target:
        return _logged(PacingDecision(progressive, "progressive", "calls in flight already cover the free agents",
                                      p_hi, free_mean, target, predicted(progressive), inputs))
    while low < high:
        mid = (low + high + 1) // 2
        if predicted(mid) <= target:
            low = mid
        else:
            high = mid - 1
    if low <= progressive:  # each of those calls has an idle agent: no abandon the model could add
        return _logged(PacingDecision(progressive, "progressive", "the target allows no call beyond the idle agents",
                                      p_hi, free_mean, target, predicted(low), inputs))
    calls = low
    return _logged(PacingDecision(
        calls, "predictive",
        f"{calls} calls: {inputs.in_flight} in flight, {free_mean:.1f} agents expected free within "
        f"{horizon:.0f} s, answer probability <= {p_hi:.3f}, predicted abandon rate "
        f"{predicted(calls):.4f} within target {target:.4f}",
        p_hi, free_mean, target, predicted(calls), inputs))


def _logged(decision: PacingDecision) -> PacingDecision:
    if log.isEnabledFor(logging.INFO):
        log.info("pacing %s", json.dumps(decision.to_dict(), sort_keys=True))
    return decision


# --------------------------------------------------------------------------- baselines
def ratio_calls(agents: tuple[AgentView, ...], in_flight: int, ratio: float) -> int:
    """A fixed dial ratio: `ratio` lines ringing per idle agent."""
    idle = sum(1 for a in agents if a.state == IDLE)
    return max(0, math.floor(ratio * idle) - in_flight)


@dataclass(frozen=True)
class DialLevel:
    """VICIdial-style adaptive dial level: lines per idle agent, moved every adjustment interval."""
    level: float = 1.0
    minimum: float = 1.0
    maximum: float = 6.0
    step: float = 0.1


def adapt_level(current: DialLevel, drop_rate: float, target: float, idle_share: float) -> DialLevel:
    """ADAPT_TAPERED-like: above the target drop rate, step down in proportion to the excess;
    below it with agents waiting (idle_share of logged-in agents idle), step up."""
    level = current.level
    if drop_rate > target:
        level -= current.step * (1 + 10 * (drop_rate - target) / target)
    elif idle_share > 0.05:
        level += current.step * min(1.0, idle_share * 4)
    return DialLevel(min(current.maximum, max(current.minimum, level)), current.minimum, current.maximum,
                     current.step)
