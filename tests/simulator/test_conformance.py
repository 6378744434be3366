"""Replays of the FreeSWITCH 1.10.12 captures in shared/reference against the simulator.

Only what naturally differs between runs is normalised: UUIDs, clock readings, host names and
addresses, Event-Sequence, the counters in `status`, and the Content-Length of frames whose
body carries such values. Everything else must match byte for byte or header for header.
"""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import gevent

from tests.esl.reference import REFERENCE
from tests.simulator.conftest import EslClient, Frame, ScriptedEndpoint

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
VOLATILE = ("Core-UUID", "FreeSWITCH-Hostname", "FreeSWITCH-Switchname", "FreeSWITCH-IPv4",
            "FreeSWITCH-IPv6", "Event-Date-Local", "Event-Date-GMT", "Event-Date-Timestamp",
            "Event-Sequence")



def transcript(path: Path) -> list[list[tuple[str, bytes]]]:
    """A transcript as connections of ('send'|'recv', exact bytes) steps."""
    connections: list[list[tuple[str, bytes]]] = [[]]
    step: list | None = None
    for line in path.read_text().split("\n"):
        if line.startswith("# === connection") and connections[-1]:
            connections.append([])
        if line.startswith("# +") and (" recv " in line or " send " in line):
            step = ["recv" if " recv " in line else "send", b""]
            connections[-1].append(step)  # type: ignore[arg-type]
        elif line.startswith(("S: ", "C: ")) and step is not None:
            step[1] += line[3:].encode() + b"\n"
        elif line.startswith(("S\\ ", "C\\ ")) and step is not None:
            step[1] = step[1][:-1]
    return [[(kind, data) for kind, data in conn] for conn in connections]


def normalise(data: bytes) -> str:
    text = UUID.sub("<uuid>", data.decode())
    for key in VOLATILE:
        text = re.sub(rf"(?m)^({key}: ).*$", r"\1<v>", text)
        text = re.sub(rf'("{key}":")[^"]*"', r'\1<v>"', text)
        text = re.sub(rf"(<{key}>)[^<]*(</{key}>)", r"\1<v>\2", text)
    if "is ready" in text:   # `status` output: uptime and session counters
        text = re.sub(r"\d+", "<d>", text)
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ [\d.]+%", "<log-stamp>", text)
    volatile_body = any(m in text for m in ("<v>", "<d>", "<log-stamp>"))
    if volatile_body:
        text = re.sub(r"Content-Length(: |\":\"|>)\d+", r"Content-Length\1<n>", text)
    return text


def test_session_basics_replay(esl_server):
    """esl-session-basics.txt: auth, command before auth, api, bgapi (plain/json/xml),
    event/nixevent/noevents/filter replies, log, linger, exit — every frame compared."""
    for steps in transcript(REFERENCE / "esl-session-basics.txt"):
        client = EslClient(esl_server.port)
        for index, (kind, data) in enumerate(steps):
            if kind == "send":
                client.sock.sendall(data)
                continue
            got = client.frame()
            assert normalise(got.raw) == normalise(data), f"frame {index} differs"
        assert client.closed() or steps[-1][0] == "recv"
        client.close()


def test_session_closes_after_exit_and_bad_auth(esl_server):
    for password in ("WrongPassword", None):
        client = EslClient(esl_server.port)
        client.frame()
        if password:
            assert client.command(f"auth {password}").get("Reply-Text") == "-ERR invalid"
        else:
            client.command("auth ClueCon")
            assert client.command("exit").get("Reply-Text") == "+OK bye"
        notice = client.frame()
        assert notice.raw == (b"Content-Type: text/disconnect-notice\nContent-Length: 67\n\n"
                              b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n")
        assert client.closed()


def _replies(path: Path) -> dict[str, list[bytes]]:
    """command line -> the reply frames FreeSWITCH gave it (in order of appearance)."""
    out: dict[str, list[bytes]] = {}
    for steps in transcript(path):
        last = None
        for kind, data in steps:
            if kind == "send":
                last = data.decode().split("\n", 1)[0]
            elif last is not None and not data.startswith(b"Content-Length"):
                out.setdefault(last, []).append(data)
                last = None
    return out


# esl-commands.txt commands whose replies do not depend on loopback's b-legs, a SIP stack or the
# capture machine; `user/1000` is a registered-then-gone user, 7003 a SIP peer answering 486.
COMMAND_REPLIES = [
    "api show channels as json", "api show calls as json", "api show channels", "api show calls",
    "api sofia status", "api version", "api originate loopback/9998/default &park()",
    "api originate user/1000@127.0.0.1 &park()", "api originate user/no_such_user@127.0.0.1 &park()",
    "api originate error/user_busy &park()", "api originate sofia/internal/7003@127.0.0.1:5060 &park()",
    "api originate {originate_timeout=2}sofia/internal/nobody@127.0.0.1:5999 &park()",
    "api originate no_such_endpoint/foo &park()", "api originate",
    "api uuid_answer 00000000-0000-0000-0000-000000000000",
    "api uuid_getvar 00000000-0000-0000-0000-000000000000 esl_ref_var",
    "api uuid_setvar 00000000-0000-0000-0000-000000000000 a b",
    "api uuid_exists 00000000-0000-0000-0000-000000000000",
    "api uuid_broadcast 00000000-0000-0000-0000-000000000000 tone_stream://%(300,0,440) aleg",
    "api uuid_send_dtmf 00000000-0000-0000-0000-000000000000 1",
    "api uuid_park 00000000-0000-0000-0000-000000000000",
    "api uuid_record 00000000-0000-0000-0000-000000000000 start /tmp/x.wav",
    "api uuid_transfer 00000000-0000-0000-0000-000000000000 7001 XML default",
    "api uuid_kill 00000000-0000-0000-0000-000000000000",
    "sendmsg 00000000-0000-0000-0000-000000000000", "api hupall", "api hupall NORMAL_CLEARING",
]


def test_command_replies(switch, client):
    """Exact replies of esl-commands.txt for the commands listed above."""
    switch.register_user("1000", ScriptedEndpoint())
    switch.unregister_user("1000")
    switch.register_user("7003", ScriptedEndpoint(on_offer="refuse", refuse_cause="USER_BUSY"))
    switch.loopback_extensions["9998"] = None
    replies = _replies(REFERENCE / "esl-commands.txt")
    for line in COMMAND_REPLIES:
        expected = replies[line][0]
        headers = {"call-command": "execute", "execute-app-name": "playback",
                   "execute-app-arg": "tone_stream://%(200,0,440)"} if line.startswith("sendmsg") else None
        got = client.command(line, headers)
        assert normalise(got.raw) == normalise(expected), line


def test_commands_on_a_live_channel(switch, client):
    """The esl-commands.txt replies that need a channel, on an originated loopback leg."""
    replies = _replies(REFERENCE / "esl-commands.txt")
    first = "bf3ed7f8-02c9-413a-9c74-6cac86e23c9b"
    second = "fdcb978b-36af-438f-9e4d-0344a276a1ad"
    for uuid in (first, second):
        assert client.command(f"api originate {{origination_uuid={uuid}}}loopback/9999/default &park()") \
            .body == f"+OK {uuid}\n".encode()
    sequence = [
        f"api uuid_setvar {first} esl_ref_var hello world", f"api uuid_getvar {first} esl_ref_var",
        f"api uuid_getvar {first} esl_ref_unset_var", f"api uuid_setvar {first} esl_ref_var",
        f"api uuid_setvar_multi {first} a=1;b=2", f"api uuid_exists {first}",
        f"api uuid_broadcast {first} tone_stream://%(300,0,440) aleg", f"api uuid_send_dtmf {first} 123#",
        f"api uuid_recv_dtmf {first} 4", f"api uuid_park {first}",
        f"api uuid_record {first} start /tmp/esl-ref-{first}.wav",
        f"api uuid_record {first} stop /tmp/esl-ref-{first}.wav",
        f"api uuid_record {first} stop /tmp/not-recording.wav",
        f"api uuid_bridge {first} {second}", f"api uuid_transfer {second} 7001 XML default",
        f"api uuid_kill {first}",
    ]
    seen: dict[str, int] = {}
    for line in sequence:
        index = seen.get(line, 0)
        seen[line] = index + 1
        got = client.command(line)
        assert normalise(got.raw) == normalise(replies[line][index]), line


def _reference_event(name: str) -> Frame:
    data = (REFERENCE / "events" / "plain" / f"{name}.txt").read_bytes()
    head, body = data.split(b"\n\n", 1)
    headers = [tuple(line.split(": ", 1)) for line in head.decode().split("\n")]
    return Frame(headers, body, data)  # type: ignore[arg-type]


def _shape(frame: Frame) -> list[str]:
    """The event's header names in order, without the channel variables (they depend on SIP)."""
    return [name for name, _ in frame.event_headers() if not name.startswith("variable_")]


class _Caller(ScriptedEndpoint):
    def on_media(self, leg, kind, detail) -> None:
        super().on_media(leg, kind, detail)
        if kind == "prompt":
            gevent.spawn_later(0.2, leg.send_dtmf, "123#")   # after the 50 ms prompt, like the capture


def _lifecycle(switch, client) -> tuple[str, str, list[Frame]]:
    """call-lifecycle.txt's call: inbound SIP call parks, uuid_answer, playback of a tone,
    play_and_get_digits with 1 2 3 #, bridge to a SIP leg, the caller hangs up."""
    names = ("CHANNEL_CREATE CHANNEL_PARK CHANNEL_UNPARK CHANNEL_ANSWER CHANNEL_EXECUTE "
             "CHANNEL_EXECUTE_COMPLETE DTMF CHANNEL_BRIDGE CHANNEL_UNBRIDGE CHANNEL_HANGUP "
             "CHANNEL_HANGUP_COMPLETE CHANNEL_DESTROY CHANNEL_PROGRESS CHANNEL_PROGRESS_MEDIA "
             "CHANNEL_OUTGOING CHANNEL_ORIGINATE CHANNEL_STATE CHANNEL_CALLSTATE PLAYBACK_START PLAYBACK_STOP")
    assert client.command(f"event plain {names}").get("Reply-Text") == "+OK event listener enabled plain"
    switch.register_user("7301", ScriptedEndpoint("agent"))
    caller = _Caller("caller")
    a = switch.inbound_call(caller, "5551234", "ESL Ref Caller", "7000").uuid
    frames = client.events("CHANNEL_PARK", uuid=a)
    assert client.command(f"api uuid_answer {a}").body == b"+OK\n"
    b = "c1474c2a-0d65-4457-ae4c-99afff53db49"
    for app, arg in (("playback", "tone_stream://%(100,0,440)"),
                     ("play_and_get_digits",
                      "1 4 1 3000 # silence_stream://50 silence_stream://50 esl_ref_digits \\d+ 3000"),
                     ("bridge", f"{{origination_uuid={b}}}sofia/internal/7301@127.0.0.1:5070")):
        assert client.command(f"sendmsg {a}", {"call-command": "execute", "execute-app-name": app,
                                               "execute-app-arg": arg}).get("Reply-Text") == "+OK"
        until = "CHANNEL_BRIDGE" if app == "bridge" else "CHANNEL_EXECUTE_COMPLETE"
        frames += client.events(until, uuid=a)
    switch.channels[a].hangup("NORMAL_CLEARING")   # the caller's BYE
    frames += client.events("CHANNEL_STATE", uuid=a)
    while frames[-1].event("Channel-State") != "CS_DESTROY" or frames[-1].event("Unique-ID") != a:
        frames += client.events("CHANNEL_STATE", uuid=a)
    return a, b, frames


def _reference_lifecycle() -> list[tuple[str, ...]]:
    """call-lifecycle-raw.txt's events as (name, leg, states...) without the public->default
    transfer the reference dialplan made (the simulated dialplan parks directly)."""
    rows = []
    for kind, data in transcript(REFERENCE / "call-lifecycle-raw.txt")[0]:
        if kind == "recv" and data.startswith(b"Content-Length"):
            head, body = data.split(b"\n\n", 1)
            rows.append(Frame([], body, data))
    a = rows[0].event("Unique-ID")
    out = []
    routing_seen = 0
    for frame in rows:
        key = _key(frame, a)
        if frame.event("Application") == "transfer":
            continue
        if key[0] == "CHANNEL_STATE" and key[1] == "A" and key[2] in ("CS_ROUTING", "CS_EXECUTE") \
                and routing_seen < 4:
            routing_seen += 1
            if routing_seen in (3, 4):   # the second routing pass, caused by the transfer
                continue
        out.append(key)
    return out


def _key(frame: Frame, a: str) -> tuple[str, ...]:
    return (frame.event("Event-Name"), "A" if frame.event("Unique-ID") == a else "B",
            frame.event("Channel-State"), frame.event("Channel-State-Number"),
            frame.event("Channel-Call-State"), frame.event("Answer-State"),
            frame.event("Application") or "", frame.event("Hangup-Cause") or "")


def test_call_lifecycle_event_sequence(switch, client):
    """Every event of the captured call, in FreeSWITCH's order, with its channel state,
    state number, call state, answer state, application and hangup cause."""
    a, _, frames = _lifecycle(switch, client)
    got = [_key(f, a) for f in frames]
    assert got == _reference_lifecycle()


def test_event_header_order_matches_reference(switch, client):
    """Each event the lifecycle produces has the reference sample's headers in the same order
    (channel variables aside; Caller-RDNIS/Transfer-Source only exist after a transfer)."""
    a, b, frames = _lifecycle(switch, client)
    samples = {"CHANNEL_CREATE": "CHANNEL_CREATE", "CHANNEL_PARK": "CHANNEL_PARK",
               "CHANNEL_PROGRESS_MEDIA": None, "CHANNEL_ANSWER": "CHANNEL_ANSWER",
               "DTMF": "DTMF", "PLAYBACK_START": "PLAYBACK_START", "PLAYBACK_STOP": "PLAYBACK_STOP",
               "CHANNEL_BRIDGE": "CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE": "CHANNEL_UNBRIDGE",
               "CHANNEL_HANGUP": "CHANNEL_HANGUP", "CHANNEL_UNPARK": "CHANNEL_UNPARK",
               "CHANNEL_HANGUP_COMPLETE": "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY": "CHANNEL_DESTROY"}
    leg_b = {"CHANNEL_CREATE": "CHANNEL_CREATE-bleg", "CHANNEL_ANSWER": "CHANNEL_ANSWER-bleg",
             "CHANNEL_OUTGOING": "CHANNEL_OUTGOING", "CHANNEL_ORIGINATE": "CHANNEL_ORIGINATE",
             "CHANNEL_PROGRESS": "CHANNEL_PROGRESS", "CHANNEL_HANGUP": "CHANNEL_HANGUP-bleg",
             "CHANNEL_HANGUP_COMPLETE": "CHANNEL_HANGUP_COMPLETE-bleg",
             "CHANNEL_DESTROY": "CHANNEL_DESTROY-bleg"}
    apps = {"playback": "CHANNEL_EXECUTE{}-playback", "bridge": "CHANNEL_EXECUTE{}-bridge",
            "play_and_get_digits": "CHANNEL_EXECUTE{}-play_and_get_digits"}
    checked = set()
    for frame in frames:
        name = frame.event("Event-Name")
        uuid = frame.event("Unique-ID")
        sample = (samples if uuid == a else leg_b).get(name)
        app = frame.event("Application")
        if name in ("CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE") and app in apps and uuid == a:
            sample = apps[app].format("" if name == "CHANNEL_EXECUTE" else "_COMPLETE")
        if sample is None or sample in checked:
            continue
        checked.add(sample)
        expected = [h for h in _shape(_reference_event(sample))
                    if h not in ("Caller-Transfer-Source", "Caller-RDNIS", "Other-Leg-RDNIS")]
        assert _shape(frame) == expected, sample
    assert len(checked) >= 20


def test_cdr_variables_in_hangup_complete(switch, client):
    """HANGUP_COMPLETE carries the CDR variables FreeSWITCH adds, in its order."""
    a, b, frames = _lifecycle(switch, client)
    complete = next(f for f in frames if f.event("Event-Name") == "CHANNEL_HANGUP_COMPLETE"
                    and f.event("Unique-ID") == a)
    names = [n[len("variable_"):] for n, _ in complete.event_headers() if n.startswith("variable_")]
    reference = [n[len("variable_"):] for n, _ in _reference_event("CHANNEL_HANGUP_COMPLETE").event_headers()
                 if n.startswith("variable_")]
    cdr = reference[reference.index("hangup_cause"):]
    ours = [n for n in names if n in cdr]
    assert ours == [n for n in cdr if n in names]
    for required in ("start_stamp", "answer_stamp", "end_stamp", "duration", "billsec", "progress_mediasec",
                     "hangup_cause", "hangup_cause_q850", "sip_hangup_disposition", "rtp_audio_in_mos",
                     "rtp_audio_in_packet_count", "rtp_audio_in_jitter_min_variance"):
        assert required in names, required
    assert complete.event("variable_sip_hangup_disposition") == "recv_bye"
    assert complete.event("variable_esl_ref_digits") == "123"
    b_complete = next(f for f in frames if f.event("Event-Name") == "CHANNEL_HANGUP_COMPLETE"
                      and f.event("Unique-ID") == b)
    assert b_complete.event("variable_sip_hangup_disposition") == "send_bye"
    assert unquote(b_complete.event_headers()[0][1]) == "CHANNEL_HANGUP_COMPLETE"
