"""`callrouter simulate` as a user runs it: a real process, a real Event Socket, signals."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import gevent
import pytest
from gevent.queue import Queue
from greenswitch.esl import InboundESL

pytestmark = pytest.mark.timeout(60)

CALLROUTER = str(Path(sys.executable).with_name("callrouter"))
BROKEN = Path(__file__).parent / "data" / "broken"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CALLROUTER, "simulate", *args], capture_output=True, text=True, timeout=30)


def test_help_speaks_to_telecom_engineers() -> None:
    result = run("--help")
    assert result.returncode == 0
    for text in ("Event Socket", "--scenario", "--port", "--password", "--truth-file", "--duration",
                 "--seed", "park_timeout", "SIGTERM"):
        assert text in result.stdout


def test_a_broken_scenario_is_refused_with_its_place() -> None:
    result = run("--scenario", str(BROKEN / "unknown_key.yaml"), "--port", "0")
    assert result.returncode != 0
    assert f"{BROKEN / 'unknown_key.yaml'}:4:1: unknown key 'agent'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def simulator(tmp_path: Path):
    truth = tmp_path / "truth.jsonl"
    proc = subprocess.Popen([CALLROUTER, "simulate", "--scenario", "smoke", "--port", "0", "--password", "pw",
                             "--truth-file", str(truth), "--seed", "11"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        banner = proc.stdout.readline()
        match = re.fullmatch(r"node sim1: Event Socket on 127\.0\.0\.1:(\d+) password pw\n", banner)
        assert match, banner + proc.stderr.read() if proc.poll() is not None else banner
        yield proc, int(match[1]), truth
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_simulate_serves_parked_calls_and_stops_cleanly(simulator) -> None:
    proc, port, truth = simulator
    with pytest.raises(ValueError, match="Invalid password"):  # greenswitch's word for -ERR invalid
        InboundESL("127.0.0.1", port, "ClueCon").connect()

    esl = InboundESL("127.0.0.1", port, "pw")
    esl.connect()
    parked: Queue = Queue()
    esl.register_handle("CHANNEL_PARK", lambda event: parked.put(event.headers))
    assert esl.send("event plain CHANNEL_PARK").data.startswith("+OK")
    call = parked.get(timeout=10)
    # the simulated dialplan tagged the call as the smoke scenario's park_variables say
    assert call["variable_callrouter_entry"] == "2125550100"
    assert call["Caller-Destination-Number"] == "+12125550100"
    uuid = call["Unique-ID"]
    esl.send(f"api uuid_answer {uuid}")
    esl.send(f"sendmsg {uuid}\ncall-command: execute\nexecute-app-name: bridge\nexecute-app-arg: user/1001")
    with gevent.Timeout(15):
        while not any(json.loads(line)["uuid"] == uuid for line in truth.read_text().splitlines()):
            gevent.sleep(0.1)
    esl.stop()

    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "stopped:" in out
    records = [json.loads(line) for line in truth.read_text().splitlines()]
    ours = next(r for r in records if r["uuid"] == uuid)
    assert ours["agent"] == "1001" and ours["answered_at"] is not None
    # calls still up at SIGTERM were hung up by the switch going down, and recorded too
    placed = int(re.search(r"(\d+) inbound calls placed", out)[1])
    assert sum(r["direction"] == "inbound" for r in records) == placed
