"""Service level, abandon rate and ASA over rolling windows, on a hand-worked quarter hour, with each
of the reports' service-level definitions."""
from __future__ import annotations

import pytest

from engine.cdr.reports import ReportSettings, ServiceLevelDefinition
from engine.metrics.window import QueueWindows


class Clock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


def morning(definition: ServiceLevelDefinition) -> tuple[QueueWindows, Clock]:
    """sales, within 10 minutes: 4 answered (5 s, 20 s, 21 s, 40 s), 2 abandoned (3 s short, 30 s),
    1 timed out (120 s); support: 1 answered (2 s)."""
    clock = Clock()
    windows = QueueWindows(ReportSettings(service_level_seconds=20, service_level_definition=definition,
                                          short_abandon_seconds=5), clock)
    for outcome, wait in (("answered", 5), ("answered", 20), ("abandoned", 3), ("answered", 21),
                          ("abandoned", 30), ("answered", 40), ("timeout", 120)):
        windows.wait_ended("sales", outcome, wait)
        clock.now += 90
    windows.wait_ended("support", "answered", 2)
    return windows, clock


@pytest.mark.parametrize("definition, expected", [
    (ServiceLevelDefinition.OFFERED, 2 / 7),  # 5 s and 20 s (at the threshold counts) of all 7
    (ServiceLevelDefinition.OFFERED_MINUS_SHORT_ABANDONS, 2 / 6),
    (ServiceLevelDefinition.ANSWERED, 2 / 4),
])
def test_service_level_follows_the_reports_definition(definition, expected):
    windows, _ = morning(definition)
    figures = windows.figures("sales", "15m")
    assert figures.service_level == pytest.approx(expected)
    assert (figures.calls, figures.answered, figures.answered_within) == (7, 4, 2)
    assert (figures.abandoned, figures.short_abandoned) == (1, 1)
    assert figures.abandon_rate == pytest.approx(1 / 6)  # the 3 s abandon is no real offer
    assert figures.average_answer_seconds == pytest.approx((5 + 20 + 21 + 40) / 4)
    assert windows.figures("support", "15m").service_level == 1.0


def test_waits_leave_each_window_as_it_rolls_on():
    windows, clock = morning(ServiceLevelDefinition.OFFERED)
    # The sales waits ended at +0, +90, ... +540 s; now is +630 s.
    assert windows.figures("sales", "5m").calls == 3  # ended at +360, +450, +540
    clock.now += 300
    assert windows.figures("sales", "5m").calls == 0
    assert windows.figures("sales", "5m").service_level is None  # nothing counts: unknown, not 0 %
    assert windows.figures("sales", "15m").calls == 6  # now +930 s: the wait that ended at +0 is out
    clock.now += 3600
    assert windows.figures("sales", "1h").calls == 0
    assert windows.queues == ["sales", "support"]  # a quiet queue keeps reporting, at zero calls


def test_an_unknown_outcome_is_refused_before_anything_is_counted():
    windows, _ = morning(ServiceLevelDefinition.OFFERED)
    with pytest.raises(ValueError, match="outcome"):
        windows.wait_ended("sales", "overflowed", 10)
    assert windows.figures("sales", "15m").calls == 7
