"""Bad input: the Event Socket parser fed malformed frames (hypothesis), the engine's real
connection fed garbage by the switch, and YAML loading and `callrouter check` fed mangled files.
Each either works, or fails with the error it documents (ProtocolError, ConfigError with
file:line:col), never with anything else, never by hanging."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from engine.config import config_from_yaml
from engine.errors import ConfigError
from engine.esl.protocol import MAX_HEADER_BYTES, FrameParser, ProtocolError
from engine.ivr.loader import Checks, FlowErrors, build_flowset
from engine.yamlfile import loads
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

header_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
frames = st.lists(st.tuples(st.sampled_from(["text/event-plain", "api/response", "command/reply", "x/unknown"]),
                            st.binary(max_size=300)), min_size=1, max_size=6)


def frame(content_type: str, body: bytes) -> bytes:
    return f"Content-Length: {len(body)}\nContent-Type: {content_type}\n\n".encode() + body


@FAST
@given(frames, st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=20))
def test_frames_come_out_whole_however_the_bytes_are_cut(parts, cuts):
    stream = b"".join(frame(t, b) for t, b in parts)
    whole = [(e.content_type, e._raw_body) for e in FrameParser().feed(stream)]
    parser, pieces, at = FrameParser(), [], 0
    for size in cuts * (len(stream) // max(1, sum(cuts)) + 1):
        pieces += parser.feed(stream[at:at + size])
        at += size
    pieces += parser.feed(stream[at:])
    assert [(e.content_type, e._raw_body) for e in pieces] == whole
    assert [t for t, _ in parts] == [t for t, _ in whole], "each frame's body stayed its own"


@FAST
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_give_frames_or_a_protocol_error_only(data):
    parser = FrameParser()
    try:
        for event in parser.feed(data):
            event.headers()
            _ = event.body, event.name, event.unique_id
    except ProtocolError:
        pass


@FAST
@given(header_text)
def test_an_encoded_value_never_becomes_a_header(value):
    # Every byte but the unreserved ones percent-encoded, '%' too: switch_url_encode keeps a literal
    # "%XX" as it is (so such a value cannot come back), which is FreeSWITCH's quirk, not the parser's.
    body = (f"Event-Name: CHANNEL_PARK\nCaller-Caller-ID-Name: {quote(value, safe='')}\n"
            "X-Broken: 100%zz%4\n\n").encode()
    event = FrameParser().feed(frame("text/event-plain", body))[0]
    assert event["Caller-Caller-ID-Name"] == value
    assert event.name == "CHANNEL_PARK" and event.get("Unique-ID") is None
    assert set(event.headers()) == {"Event-Name", "Caller-Caller-ID-Name", "X-Broken"}
    assert event["X-Broken"] == "100%zz%4", "an invalid %-sequence is kept literally"


@pytest.mark.parametrize("bad, why", [
    (b"Content-Length: twelve\nContent-Type: api/response\n\n", "not a number"),
    (b"Content-Length: -5\nContent-Type: api/response\n\n", "out of range"),
    (b"Content-Length: 99999999999\nContent-Type: api/response\n\n", "out of range"),
    (b"Content-Type: text/event-plain\nX: " + b"a" * (MAX_HEADER_BYTES + 10), "no end of frame headers"),
])
def test_frames_that_cannot_be_framed_raise_protocol_error(bad, why):
    with pytest.raises(ProtocolError, match=why):
        FrameParser().feed(bad)


@pytest.mark.timeout(60)
def test_garbage_from_the_switch_resets_the_connection_and_the_engine_reconnects(centre_factory, engine_factory,
                                                                                  tmp_path):
    centre = centre_factory("seed: 1\nnodes: [{name: sim1, port: 0}]\n")
    engine = engine_factory(centre.config(tmp_path))
    for garbage in (b"Content-Length: bogus\n\n", b"Content-Type: api/response\nContent-Length: 999999999999\n\n"):
        before = list(centre.server.connections)
        before[0].send_raw(garbage)
        wait_until(lambda: all(c.closed for c in before), what="the engine to drop the unframeable stream")
        wait_until(lambda: engine.nodes[0].up and any(c not in before for c in centre.server.connections),
                   what="a fresh connection")
    assert engine.nodes[0].api("status").startswith("UP ")


yaml_text = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(["flow: f\n", "nodes:\n", "  a: {type: play, prompt: x}\n", "start: a\n", "- ",
                              "{", "}", "[", "]", ": ", "&anchor ", "*anchor\n", "!!python/object:os.system ",
                              "\t", "'", '"', "\\u0000", "%YAML 1.1\n", "---\n", "key: key\nkey: again\n",
                              "<<: *x\n", "? complex\n", "\x00", "\udcff"]), max_size=25).map("".join),
)


@FAST
@given(yaml_text)
def test_yaml_loading_raises_only_config_errors_with_a_position(text):
    try:
        loads(text, "fuzz.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.yaml"), str(exc)


@FAST
@given(yaml_text)
def test_config_and_flow_loading_raise_only_config_errors(text):
    try:
        config_from_yaml(loads(text, "fuzz.yaml"), "fuzz.yaml")
    except ConfigError:
        pass


def _scalar_document(text: str) -> bool:
    try:
        doc = loads(text, "fuzz.yaml")
    except ConfigError:
        return False
    return doc is not None and not isinstance(doc, (dict, list))


@settings(max_examples=40, deadline=None)
@given(yaml_text)
def test_flow_files_raise_only_flow_errors(tmp_path_factory, text):
    assume(not _scalar_document(text))  # a known crash: the test below
    path = tmp_path_factory.mktemp("flows") / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        build_flowset([path], Checks())
    except FlowErrors as exc:
        assert all(str(e).startswith(str(path)) for e in exc.errors), str(exc)


@pytest.mark.parametrize("text", ["0\n", "true\n", "3.5\n"])
def test_a_flow_file_that_is_a_bare_scalar_gets_a_positioned_error(tmp_path, text):
    path = tmp_path / "scalar.yaml"
    path.write_text(text)
    with pytest.raises(FlowErrors, match=f"{path}:1:1"):
        build_flowset([path], Checks())


@pytest.mark.timeout(60)
def test_callrouter_check_reports_hostile_files_without_a_traceback(tmp_path):
    files = {
        "binary.yaml": b"\xff\xfe\x00\x01 not text",
        "latin1.yaml": "flow: caf\xe9\n".encode("latin-1"),
        "bomb.yaml": b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                     b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n",
        "python.yaml": b"flow: !!python/object/apply:os.system ['touch pwned']\n",
        "empty.yaml": b"",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    result = subprocess.run([sys.executable, "-m", "engine", "check", *sorted(str(tmp_path / n) for n in files)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=50)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    for name in files:
        assert f"{tmp_path / name}:" in result.stderr, (name, result.stderr)
    assert not (tmp_path / "pwned").exists()


def test_deeply_nested_yaml_gets_a_config_error():
    with pytest.raises(ConfigError):
        loads("a: " + "[" * 5000 + "]" * 5000 + "\n", "deep.yaml")
