"""Each file under broken/ holds one kind of mistake an operator makes, and on its first line
the `line:col: message` the checker must report for it (lines counted in the file as it is).
None may crash the loader, the `callrouter check` command, or a running engine's reload."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.ivr.loader import Checks, FlowErrors, build_flowset
from engine.ivr.route import FlowsHolder

HERE = Path(__file__).parent
BROKEN = sorted((HERE / "broken").glob("*.yaml"))
CHECKS = Checks(queues=frozenset({"sales", "support", "billing"}), sounds_dir=HERE / "sounds")


def expectation(path: Path) -> tuple[str, str]:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: LINE:COL: message'"
    place, message = first.removeprefix("# expect: ").split(": ", 1)
    return place, message


def test_the_corpus_has_at_least_30_kinds_of_mistake():
    assert len(BROKEN) >= 30


@pytest.mark.parametrize("path", BROKEN, ids=[p.stem for p in BROKEN])
def test_broken_file_reports_file_line_col_and_message(path):
    place, message = expectation(path)
    with pytest.raises(FlowErrors) as caught:
        build_flowset([path], CHECKS)
    reported = [str(e) for e in caught.value.errors]
    assert any(r.startswith(f"{path}:{place}: ") and message in r for r in reported), "\n".join(reported)


def test_every_error_of_a_file_is_reported_not_just_the_first(tmp_path):
    path = tmp_path / "many.yaml"
    path.write_text("flow: t\nstart: a\nnodes:\n  a:\n    type: play\n    promt: x.wav\n    next: b\n"
                    "  b:\n    type: hangup\n    cause: LOUD\n  c:\n    type: queue\n    queue: nope\n"
                    "    on_timeout: zz\n    on_no_agents: b\n")
    with pytest.raises(FlowErrors) as caught:
        build_flowset([path], CHECKS)
    lines = [str(e).removeprefix(f"{path}:") for e in caught.value.errors]
    assert [line.split(": ")[0] for line in lines] == ["5:5", "6:5", "10:12", "13:12", "14:17"], lines


def test_a_reload_with_any_broken_file_keeps_the_running_flows(tmp_path):
    live = tmp_path / "dialplans"
    shutil.copytree(HERE.parent.parent / "dialplans", live, ignore=shutil.ignore_patterns("*.md"))
    holder = FlowsHolder(live, Checks(queues=CHECKS.queues))
    before = holder.current
    for broken in BROKEN:
        if "sound file" in expectation(broken)[1]:
            continue  # the running engine here checks no sound directory
        target = live / "zz_edit.yaml"
        shutil.copy(broken, target)
        with pytest.raises(FlowErrors):
            holder.reload()
        assert holder.current is before, f"{broken.name} replaced the running flows"
    (live / "zz_edit.yaml").unlink()
    assert holder.reload().version == before.version
