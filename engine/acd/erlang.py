"""Staffing formulas: Erlang C (M/M/n, callers wait as long as it takes) and Erlang A (M/M/n+M,
callers abandon after an exponential patience), as contact centres plan hotlines with.

Both are computed iteratively, never with factorials or powers of the traffic, so a thousand
agents are as exact as ten: Erlang C through the Erlang B recursion, Erlang A through the
birth-death chain's state probabilities in log space and, for the service level, the waiting
time of a caller who finds j callers ahead of it (it is answered once the j ahead and one agent
have cleared, each stage ending at the agents' rate plus the abandonment rate of those in line,
unless its own patience runs out first), summed over j by uniformization.

Service level here is "answered within T / offered": a caller who abandons counts against it.
ASA is the mean wait of the answered calls (0 for those answered at once).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from engine.errors import CallRouterError

# State probabilities below e^-40 of the largest are dropped (they change nothing in 15 digits).
_NEGLIGIBLE = 40.0


class StaffingError(CallRouterError):
    """The staffing question has no answer as asked (no traffic, or no staffing meets the target)."""


@dataclass(frozen=True)
class Staffing:
    agents: int
    traffic_erlangs: float
    probability_of_waiting: float
    service_level: float
    asa_seconds: float
    occupancy: float
    abandon_rate: float | None = None  # Erlang A only

    def to_dict(self) -> dict[str, float | int | None]:
        out = {"agents": self.agents, "service_level": self.service_level, "asa_seconds": self.asa_seconds,
               "occupancy": self.occupancy, "probability_of_waiting": self.probability_of_waiting,
               "traffic_erlangs": self.traffic_erlangs}
        if self.abandon_rate is not None:
            out["abandon_rate"] = self.abandon_rate
        return out


def erlang_b(agents: int, traffic: float) -> float:
    """Blocking probability of an M/M/n/n system: B(n) = A B(n-1) / (n + A B(n-1))."""
    blocking = 1.0
    for n in range(1, agents + 1):
        blocking = traffic * blocking / (n + traffic * blocking)
    return blocking


def erlang_c(agents: int, traffic: float) -> float:
    """Probability that a caller waits in an M/M/n queue (1 when the agents cannot keep up)."""
    if agents <= traffic:
        return 1.0
    blocking = erlang_b(agents, traffic)
    return agents * blocking / (agents - traffic * (1.0 - blocking))


def erlang_c_staffing(agents: int, calls_per_second: float, aht: float, answer_within: float) -> Staffing:
    traffic = calls_per_second * aht
    waiting = erlang_c(agents, traffic)
    if agents <= traffic:
        return Staffing(agents, traffic, 1.0, 0.0, math.inf, 1.0)
    service_level = 1.0 - waiting * math.exp(-(agents - traffic) * answer_within / aht)
    return Staffing(agents, traffic, waiting, service_level, waiting * aht / (agents - traffic), traffic / agents)


def _log_state_weights(agents: int, calls_per_second: float, aht: float, patience: float) -> list[float]:
    """log of unnormalised P(k callers in the system), k = 0.. until negligible, for M/M/n+M."""
    traffic = calls_per_second * aht
    log_traffic = math.log(traffic)
    weights = [k * log_traffic - math.lgamma(k + 1) for k in range(agents + 1)]
    top = max(weights)
    log_rate = math.log(calls_per_second)
    k = agents
    while True:
        k += 1
        weights.append(weights[-1] + log_rate - math.log(agents / aht + (k - agents) / patience))
        top = max(top, weights[-1])
        # past the mode (departures outpace arrivals) and negligible: the rest only shrinks
        if agents / aht + (k - agents) / patience > calls_per_second and weights[-1] < top - _NEGLIGIBLE:
            return weights


def erlang_a_staffing(agents: int, calls_per_second: float, aht: float, answer_within: float,
                      patience: float) -> Staffing:
    """M/M/n+M with mean patience `patience` seconds (exponential)."""
    traffic = calls_per_second * aht
    weights = _log_state_weights(agents, calls_per_second, aht, patience)
    top = max(weights)
    total = sum(math.exp(w - top) for w in weights)
    pi = [math.exp(w - top) / total for w in weights]
    waiting = sum(pi[agents:])
    queued = sum((k - agents) * p for k, p in enumerate(pi) if k > agents)
    abandon = queued / patience / calls_per_second
    # A caller finding `ahead` callers in line passes stages ahead, ahead-1, .., 0; stage j ends at
    # rate n/aht + j/patience (an agent frees or someone ahead gives up), the caller's own patience
    # kills it at 1/patience.
    ahead = pi[agents:]
    give_up = 1.0 / patience
    rates = [agents / aht + j / patience for j in range(len(ahead))]
    answered_waiting, wait_sum = 0.0, 0.0
    survive, mean_stage_sum = 1.0, 0.0
    for j, p in enumerate(ahead):
        survive *= rates[j] / (rates[j] + give_up)
        mean_stage_sum += 1.0 / (rates[j] + give_up)
        answered_waiting += p * survive
        wait_sum += p * survive * mean_stage_sum
    answered = (1.0 - waiting) + answered_waiting
    service_level = (1.0 - waiting) + _answered_within(ahead, rates, give_up, answer_within)
    occupancy = min(1.0, traffic * (1.0 - abandon) / agents)
    return Staffing(agents, traffic, waiting, service_level, wait_sum / answered if answered else math.inf,
                    occupancy, abandon)


def _answered_within(ahead: list[float], rates: list[float], give_up: float, seconds: float) -> float:
    """P(found j ahead, answered within `seconds`), summed over j, by uniformization: a
    discrete chain stepping at rate `uniform` moves one stage on, dies, or stays."""
    if seconds <= 0 or not ahead:
        return 0.0
    uniform = rates[-1] + give_up
    mean_steps = uniform * seconds
    last = int(mean_steps + 10.0 * math.sqrt(mean_steps) + 20)
    stages = list(ahead)   # stages[j]: mass with j ahead still waiting
    served, total = 0.0, 0.0
    log_mean = math.log(mean_steps)
    for step in range(last + 1):
        total += math.exp(-mean_steps + step * log_mean - math.lgamma(step + 1)) * served
        served += stages[0] * rates[0] / uniform
        stages = [stages[j] * (1.0 - (rates[j] + give_up) / uniform) + stages[j + 1] * rates[j + 1] / uniform
                  for j in range(len(stages) - 1)] + [stages[-1] * (1.0 - (rates[-1] + give_up) / uniform)]
    return total


def staffing(calls: float, interval_seconds: float, aht: float, answer_within: float, *,
             target_sl: float | None = None, agents: int | None = None, patience: float | None = None) -> Staffing:
    """The figures for `agents`, or the fewest agents whose service level meets `target_sl`."""
    if calls <= 0 or interval_seconds <= 0 or aht <= 0:
        raise StaffingError("calls, interval and AHT must all be above 0")
    rate = calls / interval_seconds

    def at(n: int) -> Staffing:
        if patience is None:
            return erlang_c_staffing(n, rate, aht, answer_within)
        return erlang_a_staffing(n, rate, aht, answer_within, patience)

    if agents is not None:
        return at(agents)
    if target_sl is None or not 0 < target_sl < 1:
        raise StaffingError("give a target service level between 0 and 1 (exclusive), or a number of agents")
    # The service level only grows with the agents: double until the target is met, then bisect.
    traffic = rate * aht
    low = max(1, math.floor(traffic) + 1) if patience is None else 1
    ceiling = int(traffic * 10 + 100)
    high, best = low, at(low)
    while best.service_level < target_sl:
        if high >= ceiling:
            raise StaffingError(f"no staffing up to {ceiling} agents reaches a service level of {target_sl}")
        low, high = high + 1, min(ceiling, high * 2)
        best = at(high)
    while low < high:
        middle = (low + high) // 2
        result = at(middle)
        if result.service_level >= target_sl:
            high, best = middle, result
        else:
            low = middle + 1
    return best
