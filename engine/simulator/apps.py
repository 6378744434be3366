"""The dialplan applications the simulator runs (mod_dptools as FreeSWITCH 1.10 behaves):
each takes the channel and its argument string, blocks on the channel's clock while it
"plays", and returns its Application-Response (None keeps the previous one, like FreeSWITCH).
"""
from __future__ import annotations

import re
import shlex
from typing import Callable

import gevent

from engine.simulator.channel import Channel
from engine.simulator.events import HANGUP_CAUSES

_TONE_SEGMENT = re.compile(r"%\(([^)]*)\)")
_SAMPLE_RATE = 8000


def media_seconds(path: str, default_file_seconds: float) -> float | None:
    """How long a playback of `path` lasts; None = forever (silence_stream://-1, loops=-1)."""
    if path.startswith("file_string://"):
        total = 0.0
        for part in path[len("file_string://"):].split("!"):
            seconds = media_seconds(part, default_file_seconds)
            if seconds is None:
                return None
            total += seconds
        return total
    if path.startswith("silence_stream://"):
        ms = int(path[len("silence_stream://"):].split(",")[0] or 0)
        return None if ms < 0 else ms / 1000.0
    if path.startswith("tone_stream://"):
        spec = path[len("tone_stream://"):]
        loops = re.search(r"loops=(-?\d+)", spec)
        count = int(loops.group(1)) if loops else 1
        if count < 0:
            return None
        ms = 0
        for segment in _TONE_SEGMENT.findall(spec):
            parts = [p for p in segment.split(",") if p.strip()]
            ms += sum(int(float(p)) for p in parts[:2])
        return count * ms / 1000.0
    return default_file_seconds


def _file_type(path: str) -> str:
    if "://" in path:
        return path.split("://", 1)[0]
    return path.rsplit(".", 1)[-1] if "." in path else "file"


def _notify(channel: Channel, kind: str, detail: str) -> None:
    if channel.endpoint is not None:
        gevent.spawn(channel.endpoint.on_media, channel, kind, detail)


def play_file(channel: Channel, path: str, terminators: str = "", kind: str = "playback",
              stop_on_dtmf: bool = False) -> str:
    """switch_ivr_play_file: PLAYBACK_START, play, PLAYBACK_STOP. Returns 'done', 'dtmf',
    'break' or 'hangup'."""
    file_headers = [("Playback-File-Type", _file_type(path)), ("Playback-File-Path", path)]
    channel.fire("PLAYBACK_START", post=file_headers)
    if kind:
        _notify(channel, kind, path)
    seconds = media_seconds(path, channel.switch.default_file_seconds)
    started = channel.clock.now()
    hit = []

    def dtmf_stop() -> bool:
        while channel.dtmf:
            if stop_on_dtmf:
                return True   # the digit stays queued for the collector
            digit = channel.dtmf.popleft()
            if digit in terminators:
                hit.append(digit)
                channel.set_var("playback_terminator_used", digit)
                return True
        return False

    reason = channel.wait(seconds, dtmf_stop, interruptible=True)
    played = channel.clock.now() - started
    status = "done" if reason in ("timeout", "done") else "break"
    if reason != "hangup":
        channel.fire("PLAYBACK_STOP", post=file_headers + [("Playback-Status", status)])
    samples = int(played * _SAMPLE_RATE)
    channel.set_var("playback_last_offset_pos", str(samples))
    channel.set_var("playback_seconds", str(int(played)))
    channel.set_var("playback_ms", str(int(played * 1000)))
    channel.set_var("playback_samples", str(samples))
    if reason == "done":
        return "dtmf"
    return {"timeout": "done"}.get(reason, reason)


def app_playback(channel: Channel, arg: str) -> str:
    terminators = channel.variables.get("playback_terminators", "")
    if terminators == "none":
        terminators = ""
    result = play_file(channel, arg, terminators)
    return "PLAYBACK ERROR" if result == "hangup" else "FILE PLAYED"


def collect_digits(channel: Channel, min_digits: int, max_digits: int, timeout: float,
                   terminators: str, digit_timeout: float) -> tuple[str, str | None, str]:
    """Gather digits from the channel's DTMF queue: (digits, terminator, 'success'|'timeout'|'hangup')."""
    digits = ""
    terminator: list[str] = []

    def enough() -> bool:
        nonlocal digits
        while channel.dtmf:
            digit = channel.dtmf.popleft()
            if digit in terminators:
                terminator.append(digit)
                return True
            digits += digit
            if len(digits) >= max_digits:
                return True
        return False

    while True:
        reason = channel.wait(timeout if not digits else digit_timeout, enough)
        if reason == "hangup":
            return digits, None, "hangup"
        if reason == "done":
            return digits, (terminator[0] if terminator else None), "success"
        return digits, None, ("success" if len(digits) >= min_digits and digits else "timeout")


def _ms(value: str, default: int) -> float:
    try:
        return int(value) / 1000.0
    except (TypeError, ValueError):
        return default / 1000.0


def app_play_and_get_digits(channel: Channel, arg: str) -> str | None:
    """min max tries timeout terminators file invalid_file var_name regexp digit_timeout transfer_on_failure"""
    args = arg.split()
    args += [""] * (11 - len(args))
    min_digits, max_digits, tries = int(args[0] or 1), int(args[1] or 1), int(args[2] or 1)
    timeout = _ms(args[3], 5000)
    terminators = args[4] if args[4] != "none" else ""
    prompt, invalid, var_name, pattern = args[5], args[6], args[7], args[8]
    digit_timeout = _ms(args[9], int(timeout * 1000))
    transfer_on_failure = " ".join(args[10:]).strip()
    channel.dtmf.clear()
    for _ in range(max(1, tries)):
        if not channel.is_up:
            return None
        if prompt:
            _notify(channel, "prompt", prompt)
            if play_file(channel, prompt, kind="", stop_on_dtmf=True) == "hangup":
                return None
        digits, terminator, result = collect_digits(channel, min_digits, max_digits, timeout,
                                                    terminators, digit_timeout)
        if result == "hangup":
            return None
        valid = min_digits <= len(digits) <= max_digits and (not pattern or re.search(pattern, digits))
        if valid:
            if var_name:
                channel.set_var(var_name, digits)
            if terminator:
                channel.set_var("read_terminator_used", terminator)
            channel.set_var("read_result", "success")
            return None
        channel.set_var("read_result", "failure" if digits else "timeout")
        if invalid and invalid != "silence_stream://0":
            if play_file(channel, invalid, kind="playback") == "hangup":
                return None
    if transfer_on_failure:
        channel.switch.transfer(channel, *transfer_on_failure.split())
    return None


def app_read(channel: Channel, arg: str) -> str | None:
    """min max sound_file variable_name timeout terminators digit_timeout"""
    args = arg.split()
    args += [""] * (7 - len(args))
    min_digits, max_digits = int(args[0] or 0), int(args[1] or 1)
    prompt, var_name = args[2], args[3]
    timeout = _ms(args[4], 5000)
    terminators = args[5] or "#"
    digit_timeout = _ms(args[6], int(timeout * 1000))
    channel.dtmf.clear()
    if prompt:
        _notify(channel, "prompt", prompt)
        if play_file(channel, prompt, kind="", stop_on_dtmf=True) == "hangup":
            return None
    digits, terminator, result = collect_digits(channel, min_digits, max_digits, timeout, terminators,
                                                digit_timeout)
    if result == "hangup":
        return None
    if var_name:
        channel.set_var(var_name, digits)
    if terminator:
        channel.set_var("read_terminator_used", terminator)
    channel.set_var("read_result", result)
    return None


def app_say(channel: Channel, arg: str) -> str | None:
    """<lang> <type> <method> <text>: about half a second per spoken item."""
    parts = arg.split(None, 3)
    text = parts[3] if len(parts) == 4 else arg
    _notify(channel, "say", text)
    channel.wait(0.5 * max(1, len(text)), interruptible=True)
    return None


def app_answer(channel: Channel, arg: str) -> str | None:
    channel.mark_answered()
    return None


def app_pre_answer(channel: Channel, arg: str) -> str | None:
    channel.mark_pre_answered()
    return None


def app_ring_ready(channel: Channel, arg: str) -> str | None:
    channel.mark_ring_ready()
    return None


def app_park(channel: Channel, arg: str) -> str | None:
    park_loop(channel)
    return None


def park_loop(channel: Channel) -> None:
    """switch_ivr_park: CHANNEL_PARK, run queued executes, honour park_timeout, CHANNEL_UNPARK."""
    channel.leave_park = False
    channel.parked = True
    channel.fire("CHANNEL_PARK")
    deadline, cause = None, "NORMAL_CLEARING"
    spec = channel.variables.get("park_timeout")
    if spec:
        _, colon, named = spec.partition(":")
        if colon:
            cause = _str2cause(named)
        seconds = _atoi(spec)   # "N[:CAUSE]": atoi stops at the colon; junk reads as 0
        if seconds >= 0:        # 0 hangs up at once; only a negative N parks without a deadline
            deadline = channel.clock.now() + seconds
        channel.set_var("park_timeout", None)   # read once, like FreeSWITCH
    while channel.is_up and not channel.leave_park:
        remaining = None if deadline is None else max(0.0, deadline - channel.clock.now())
        reason = channel.wait(remaining, lambda: bool(channel.messages) or channel.leave_park, nested=False)
        if reason == "timeout":
            channel.perform_hangup(cause)
        elif reason == "done":
            channel.run_messages()
    channel.parked = False
    channel.leave_park = False
    channel.break_requested = False
    channel.fire("CHANNEL_UNPARK")


def _atoi(text: str) -> int:
    """C's atoi: leading blanks, a sign, digits; anything else ends the number (or gives 0)."""
    match = re.match(r"\s*([+-]?\d+)", text)
    return int(match.group(1)) if match else 0


def _str2cause(text: str) -> str:
    """switch_channel_str2cause: a Q.850 code or a cause name in any case; NORMAL_CLEARING
    for anything else."""
    if text[:1].isdigit():
        code = _atoi(text)
        return next((name for name, q850 in HANGUP_CAUSES.items() if q850 == code), "NORMAL_CLEARING")
    return text.upper() if text.upper() in HANGUP_CAUSES else "NORMAL_CLEARING"


def app_bridge(channel: Channel, arg: str) -> str | None:
    channel.switch.bridge_app(channel, arg)
    return None


def app_set(channel: Channel, arg: str) -> str | None:
    name, _, value = arg.partition("=")
    channel.set_var(name.strip(), value if value != "" else None)
    return None


def app_export(channel: Channel, arg: str) -> str | None:
    name, _, value = arg.partition("=")
    local = not name.startswith("nolocal:")
    name = name.removeprefix("nolocal:").strip()
    if local:
        channel.set_var(name, value or None)
    channel.exports[name] = value   # copied onto every leg this channel bridges to
    return None


def app_unset(channel: Channel, arg: str) -> str | None:
    channel.set_var(arg.strip(), None)
    return None


def app_hangup(channel: Channel, arg: str) -> str | None:
    channel.perform_hangup(arg.strip() or "NORMAL_CLEARING")
    return None


def app_sleep(channel: Channel, arg: str) -> str | None:
    channel.wait(_ms(arg.strip(), 0), interruptible=True)
    return None


def app_record(channel: Channel, arg: str) -> str | None:
    """<path> [time_limit_secs] [silence_thresh] [silence_hits]: until the limit, a
    terminator digit (playback_terminators, default *), uuid_break or hangup."""
    parts = arg.split()
    path = parts[0] if parts else ""
    limit = float(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    terminators = channel.variables.get("playback_terminators", "*")
    headers = [("Record-File-Path", path)]
    channel.fire("RECORD_START", post=headers)
    _notify(channel, "record", path)
    started = channel.clock.now()

    def terminated() -> bool:
        while channel.dtmf:
            if channel.dtmf.popleft() in terminators:
                return True
        return False

    reason = channel.wait(limit, terminated, interruptible=True)
    seconds = channel.clock.now() - started
    completion = {"timeout": "success-maxtime", "done": "success-silence"}.get(reason, "hangup")
    channel.fire("RECORD_STOP", post=headers + [("Record-Completion-Cause", completion)])
    channel.set_var("record_seconds", str(int(seconds)))
    channel.set_var("record_ms", str(int(seconds * 1000)))
    channel.set_var("record_samples", str(int(seconds * _SAMPLE_RATE)))
    return None


def app_record_session(channel: Channel, arg: str) -> str | None:
    channel.switch.start_recording(channel, arg.split()[0] if arg.split() else "")
    return None


def app_stop_record_session(channel: Channel, arg: str) -> str | None:
    channel.switch.stop_recording(channel, arg.strip() or "all")
    return None


def app_transfer(channel: Channel, arg: str) -> str | None:
    parts = shlex.split(arg) if arg else []
    if parts:
        channel.switch.transfer(channel, *parts)
    return None


def app_respond(channel: Channel, arg: str) -> str | None:
    """respond <code> [reason]: 18x rings or opens early media, 200 answers, >= 300 refuses."""
    code = int(arg.split()[0]) if arg.split() and arg.split()[0].isdigit() else 0
    if code == 180:
        channel.mark_ring_ready()
    elif 180 < code < 200:
        channel.mark_pre_answered()
    elif code == 200:
        channel.mark_answered()
    elif code >= 300:
        channel.perform_hangup(_SIP_TO_CAUSE.get(code, "NORMAL_TEMPORARY_FAILURE"), disposition="send_refuse")
    return None


_SIP_TO_CAUSE = {403: "CALL_REJECTED", 404: "UNALLOCATED_NUMBER", 408: "RECOVERY_ON_TIMER_EXPIRE",
                 480: "NO_USER_RESPONSE", 486: "USER_BUSY", 487: "ORIGINATOR_CANCEL",
                 503: "NORMAL_TEMPORARY_FAILURE", 600: "USER_BUSY", 603: "CALL_REJECTED",
                 604: "NO_ROUTE_DESTINATION"}

APPLICATIONS: dict[str, Callable[[Channel, str], str | None]] = {
    "answer": app_answer,
    "pre_answer": app_pre_answer,
    "ring_ready": app_ring_ready,
    "park": app_park,
    "playback": app_playback,
    "play_and_get_digits": app_play_and_get_digits,
    "read": app_read,
    "say": app_say,
    "bridge": app_bridge,
    "set": app_set,
    "export": app_export,
    "unset": app_unset,
    "hangup": app_hangup,
    "sleep": app_sleep,
    "record": app_record,
    "record_session": app_record_session,
    "stop_record_session": app_stop_record_session,
    "transfer": app_transfer,
    "respond": app_respond,
}
