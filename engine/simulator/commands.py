"""The api commands of the simulated switch (mod_commands, mod_sofia, mod_dptools's uuid_*),
with FreeSWITCH 1.10's exact output texts (reference/esl-commands.txt, esl-session-basics.txt).

`execute_api(switch, line)` returns the body of the api/response; it may block (originate).
"""
from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Callable

from engine.simulator.channel import Channel, Message
from engine.simulator.events import HANGUP_CAUSES, format_stamp
from engine.simulator.fsparse import separate_string
from engine.simulator.switch import OriginateFailed
from engine.simulator.wire import url_encode

if TYPE_CHECKING:
    from engine.simulator.switch import Switch

VERSION = "FreeSWITCH Version 1.10.12-release~64bit ( 64bit)"
NO_SUCH_CHANNEL = "-ERR No such channel!\n"
ORIGINATE_USAGE = ("-USAGE: <call url> <exten>|&<application_name>(<app_args>) [<dialplan>] "
                   "[<context>] [<cid_name>] [<cid_num>] [<timeout_sec>]\n")

CHANNEL_FIELDS = ("uuid", "direction", "created", "created_epoch", "name", "state", "cid_name", "cid_num",
                  "ip_addr", "dest", "application", "application_data", "dialplan", "context",
                  "read_codec", "read_rate", "read_bit_rate", "write_codec", "write_rate",
                  "write_bit_rate", "secure", "hostname", "presence_id", "presence_data",
                  "accountcode", "callstate", "callee_name", "callee_num", "callee_direction",
                  "call_uuid", "sent_callee_name", "sent_callee_num", "initial_cid_name",
                  "initial_cid_num", "initial_ip_addr", "initial_dest", "initial_dialplan",
                  "initial_context")
_CALL_SIDE = ("uuid", "direction", "created", "created_epoch", "name", "state", "cid_name", "cid_num",
              "ip_addr", "dest", "presence_id", "presence_data", "accountcode", "callstate",
              "callee_name", "callee_num", "callee_direction")
CALL_FIELDS = (_CALL_SIDE + ("call_uuid", "hostname", "sent_callee_name", "sent_callee_num")
               + tuple(f"b_{name}" for name in _CALL_SIDE + ("sent_callee_name", "sent_callee_num"))
               + ("call_created_epoch",))


def _row(switch: "Switch", channel: Channel) -> dict[str, str]:
    profile = channel.profile
    outbound = channel.direction == "outbound"
    codec, rate = channel.codec if channel.media_up else ("", 0)
    bits = "" if not codec else str(rate * 16 if codec == "L16" else 64000)
    return {
        "uuid": channel.uuid, "direction": channel.direction,
        "created": format_stamp(channel.times["created"]),
        "created_epoch": str(int(channel.times["created"])), "name": channel.name,
        "state": channel.running_state,
        "cid_name": profile.callee_id_name if outbound else profile.caller_id_name,
        "cid_num": profile.callee_id_number if outbound else profile.caller_id_number,
        "ip_addr": profile.network_addr, "dest": profile.destination_number,
        "application": channel.app_stack[-1] if channel.app_stack else "",
        "application_data": channel.variables.get("current_application_data", "") if channel.app_stack else "",
        "dialplan": profile.dialplan, "context": profile.context,
        "read_codec": codec, "read_rate": str(rate or ""), "read_bit_rate": bits,
        "write_codec": codec, "write_rate": str(rate or ""), "write_bit_rate": bits,
        "secure": "", "hostname": switch.hostname,
        "presence_id": channel.variables.get("presence_id", ""), "presence_data": "",
        "accountcode": channel.variables.get("accountcode", ""), "callstate": channel.callstate,
        "callee_name": "" if outbound else profile.callee_id_name,
        "callee_num": profile.caller_id_number if outbound else profile.callee_id_number,
        "callee_direction": "RECV" if outbound else "",
        "call_uuid": channel.variables.get("call_uuid", "") if outbound or channel.bridged_to else "",
        "sent_callee_name": "", "sent_callee_num": "",
        "initial_cid_name": profile.caller_id_name, "initial_cid_num": profile.caller_id_number,
        "initial_ip_addr": profile.network_addr, "initial_dest": profile.destination_number,
        "initial_dialplan": profile.dialplan, "initial_context": profile.context,
    }


def _rows(switch: "Switch", what: str) -> tuple[tuple[str, ...], list[dict[str, str]]]:
    channels = sorted(switch.channels.values(), key=lambda c: c.times["created"])
    if what == "channels":
        return CHANNEL_FIELDS, [_row(switch, c) for c in channels]
    rows = []
    for channel in channels:
        peer = channel.bridged_to
        if peer is not None and peer.other_type == "originatee" and channel.other_type == "originator":
            continue   # the B side shows up in its A leg's row
        row = _row(switch, channel)
        side = _row(switch, peer) if peer is not None else {}
        out = {name: row[name] for name in CALL_FIELDS if name in row}
        for name in _CALL_SIDE + ("sent_callee_name", "sent_callee_num"):
            out[f"b_{name}"] = side.get(name, "")
        out["call_created_epoch"] = str(int(channel.times["bridged"])) if peer is not None else ""
        rows.append({name: out.get(name, "") for name in CALL_FIELDS})
    return CALL_FIELDS, rows


def cmd_show(switch: "Switch", args: str) -> str:
    words = args.split()
    if not words or words[0] not in ("channels", "calls", "bridged_calls"):
        return "-USAGE: show codec|endpoint|application|api|dialplan|file|timer|calls|channels\n"
    what = "calls" if words[0] == "bridged_calls" else words[0]
    fields, rows = _rows(switch, what)
    if words[0] == "bridged_calls":
        rows = [r for r in rows if r["b_uuid"]]
    if words[1:3] == ["as", "json"]:
        if not rows:
            return '{"row_count": 0}\n'
        return json.dumps({"row_count": len(rows), "rows": rows}, separators=(",", ":"), ensure_ascii=False)
    lines = [",".join(fields)] if rows else []
    lines += [",".join(row[name] for name in fields) for row in rows]
    return "".join(line + "\n" for line in lines) + f"\n{len(rows)} total.\n"


def cmd_status(switch: "Switch", args: str) -> str:
    count = len(switch.channels)
    return (f"UP {switch.uptime_text()}\n"
            "FreeSWITCH (Version 1.10.12-release  64bit) is ready\n"
            f"{switch.sessions_since_startup} session(s) since startup\n"
            f"{count} session(s) - peak {switch.peak_sessions}, last 5min {switch.peak_sessions} \n"
            "0 session(s) per Sec out of max 30, peak 0, last 5min 0 \n"
            "1000 session(s) max\n"
            "min idle cpu 0.00/99.00\n"
            "Current Stack Size/Max 240K/8192K\n")


def cmd_version(switch: "Switch", args: str) -> str:
    return VERSION + "\n"


def cmd_originate(switch: "Switch", args: str) -> str:
    words = separate_string(args, " ", 10)
    if len(words) < 2:
        return ORIGINATE_USAGE
    dial, what = words[0], words[1]
    try:
        if what.startswith("&"):
            app, _, rest = what[1:].partition("(")
            leg = switch.originate(dial, app, rest[:-1] if rest.endswith(")") else rest, None)
        else:
            leg = switch.originate(dial, "", "", what)
    except OriginateFailed as failure:
        return f"-ERR {failure.cause}\n"
    return f"+OK {leg.uuid}\n"


def _channel(switch: "Switch", uuid: str) -> Channel | None:
    channel = switch.channels.get(uuid)
    return channel if channel is not None and channel.is_up else None


def _uuid_and_rest(args: str) -> tuple[str, str]:
    uuid, _, rest = args.strip().partition(" ")
    return uuid, rest.strip()


def _on_channel(missing: str, *, whole: bool = False) -> Callable[[Callable[["Switch", Channel, str], str]],
                                                                 Callable[["Switch", str], str]]:
    """A uuid_* command on the channel its first argument names (the whole argument when
    `whole`, as mod_commands locates some), called with the rest; `missing` is the reply,
    which differs from command to command, when no such channel is up."""
    def command(run: Callable[["Switch", Channel, str], str]) -> Callable[["Switch", str], str]:
        @functools.wraps(run)
        def located(switch: "Switch", args: str) -> str:
            uuid, rest = (args.strip(), "") if whole else _uuid_and_rest(args)
            channel = _channel(switch, uuid)
            return missing if channel is None else run(switch, channel, rest)
        return located
    return command


@_on_channel("-ERROR\n", whole=True)
def cmd_uuid_answer(switch: "Switch", channel: Channel, rest: str) -> str:
    channel.mark_answered()
    return "+OK\n"


@_on_channel(NO_SUCH_CHANNEL)
def cmd_uuid_kill(switch: "Switch", channel: Channel, cause: str) -> str:
    channel.perform_hangup(cause if cause in HANGUP_CAUSES else "NORMAL_CLEARING")
    return "+OK\n"


@_on_channel(NO_SUCH_CHANNEL)
def cmd_uuid_setvar(switch: "Switch", channel: Channel, rest: str) -> str:
    name, value = (separate_string(rest, " ", 2) + [""])[:2]
    channel.set_var(name, value or None)
    return "+OK\n"


@_on_channel(NO_SUCH_CHANNEL)
def cmd_uuid_setvar_multi(switch: "Switch", channel: Channel, rest: str) -> str:
    for pair in separate_string(rest, ";", 64):
        name, _, value = pair.partition("=")
        if name:
            channel.set_var(name, value or None)
    return "+OK\n"


@_on_channel(NO_SUCH_CHANNEL)
def cmd_uuid_getvar(switch: "Switch", channel: Channel, name: str) -> str:
    return channel.variables.get(name, "_undef_")


def cmd_uuid_exists(switch: "Switch", args: str) -> str:
    return "true" if _channel(switch, args.strip()) is not None else "false"


@_on_channel("-ERR invalid uuid\n")
def cmd_uuid_broadcast(switch: "Switch", channel: Channel, rest: str) -> str:
    words = separate_string(rest, " ", 3)
    path = words[0] if words else ""
    leg = words[1] if len(words) > 1 else "aleg"
    targets = {"aleg": [channel], "bleg": [channel.bridged_to], "both": [channel, channel.bridged_to]}
    app, _, arg = path.partition("::") if "::" in path else ("playback", "", path)
    for target in targets.get(leg, [channel]):
        if target is not None:
            target.enqueue(Message(app, arg, switch.new_uuid(), event_lock=True))
    return "+OK Message sent\n"


@_on_channel(NO_SUCH_CHANNEL)
def cmd_uuid_break(switch: "Switch", channel: Channel, rest: str) -> str:
    if rest == "all":
        channel.messages.clear()
    channel.break_requested = True
    channel.poke()
    return "+OK\n"


@_on_channel("-ERR Cannot locate session!\n")
def cmd_uuid_send_dtmf(switch: "Switch", channel: Channel, digits: str) -> str:
    return f"+OK {channel.uuid} sent DTMF {digits}.\n"


@_on_channel("-ERR Cannot locate session!\n")
def cmd_uuid_recv_dtmf(switch: "Switch", channel: Channel, digits: str) -> str:
    for digit in digits.split("@")[0]:
        channel.receive_dtmf(digit, 2000, "APP")
    return f"+OK {channel.uuid} received DTMF {digits}.\n"


@_on_channel(NO_SUCH_CHANNEL, whole=True)
def cmd_uuid_park(switch: "Switch", channel: Channel, rest: str) -> str:
    channel.interrupt()
    channel.next_work = lambda: switch.park_state(channel)
    return "+OK\n"


@_on_channel(NO_SUCH_CHANNEL)
def cmd_uuid_transfer(switch: "Switch", channel: Channel, rest: str) -> str:
    words = rest.split()
    which = "aleg"
    if words and words[0] in ("-bleg", "-both"):
        which = words.pop(0)[1:]
    if not words:
        return "-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n"
    targets = {"aleg": [channel], "bleg": [channel.bridged_to], "both": [channel, channel.bridged_to]}[which]
    for target in targets:
        if target is not None:
            switch.transfer(target, *words[:3])
    return "+OK\n"


def cmd_uuid_bridge(switch: "Switch", args: str) -> str:
    words = args.split()
    if len(words) != 2:
        return "-USAGE: <uuid> <other_uuid>\n"
    a, b = _channel(switch, words[0]), _channel(switch, words[1])
    if a is None or b is None:
        return "-ERR Invalid uuid\n"
    switch.uuid_bridge(a, b)
    return f"+OK {b.uuid}\n"


# uuid_record's actions on a recording under way, with mod_commands' refusal for a path not recorded:
# mask/unmask write silence in its place (PCI pause), pause/resume leave the audio out.
_RECORD_FLAGS = {"mask": "-ERR Cannot mask recording session!\n", "unmask": "-ERR Cannot unmask recording session!\n",
                 "pause": "-ERR Cannot pause recording session!\n",
                 "resume": "-ERR Cannot resume recording session!\n"}
RECORD_USAGE = "-USAGE: <uuid> [start|stop|mask|unmask] <path> [<limit>] [<recording_vars>]\n"


def cmd_uuid_record(switch: "Switch", args: str) -> str:
    words = separate_string(args, " ", 5)
    if len(words) < 3:
        return RECORD_USAGE
    channel = _channel(switch, words[0])
    if channel is None:
        return "-ERR Cannot locate session!\n"
    action, path = words[1].lower(), words[2]
    if action == "start":
        switch.start_recording(channel, path)
    elif action == "stop":
        if not switch.stop_recording(channel, path):
            return "-ERR Cannot stop record session!\n"
    elif action in _RECORD_FLAGS:
        if path not in channel.recordings:  # the media bug is found by the exact path it was started with
            return _RECORD_FLAGS[action]
    else:
        return RECORD_USAGE
    return "+OK Success\n"


def cmd_uuid_hold(switch: "Switch", args: str) -> str:
    words = args.split()
    mode = words.pop(0) if words and words[0] in ("off", "toggle") else "on"
    channel = _channel(switch, words[0]) if words else None
    if channel is None:
        return NO_SUCH_CHANNEL
    held = channel.callstate == "HELD"
    hold = {"on": True, "off": False, "toggle": not held}[mode]
    if hold != held:
        channel.fire("CHANNEL_HOLD" if hold else "CHANNEL_UNHOLD")
        channel.set_callstate("HELD" if hold else "ACTIVE")
    return "+OK Success\n"


@_on_channel(NO_SUCH_CHANNEL)
def cmd_uuid_dump(switch: "Switch", channel: Channel, rest: str) -> str:  # rest: the format (txt only here)
    return "".join(f"{name}: {url_encode(value)}\n" for name, value in
                   [("Event-Name", "CHANNEL_DATA")] + channel.headers())


def cmd_hupall(switch: "Switch", args: str) -> str:
    cause = args.split()[0] if args.split() else "MANAGER_REQUEST"
    switch.hupall(cause if cause in HANGUP_CAUSES else "MANAGER_REQUEST")
    return f"+OK hangup all channels with cause {cause}\n"


def cmd_sofia(switch: "Switch", args: str) -> str:
    if args.split()[:1] != ["status"]:
        return "-ERR Usage: sofia status|...\n"
    rule = "=" * 97
    return ("                     Name\t   Type\t                                      Data\tState\n"
            f"{rule}\n"
            "                127.0.0.1\t  alias\t                                  internal\tALIASED\n"
            "                 internal\tprofile\t              sip:mod_sofia@127.0.0.1:5060\tRUNNING (0)\n"
            f"{rule}\n"
            "1 profile 1 alias\n")


def cmd_sofia_contact(switch: "Switch", args: str) -> str:
    user = args.strip().split("/")[-1].split("@")[0]
    if user in switch.users:
        return f"sofia/internal/sip:{user}@127.0.0.1:5070"
    return "error/user_not_registered"


def cmd_log(switch: "Switch", args: str) -> str:
    level, _, text = args.partition(" ")
    switch.log(level.upper() or "DEBUG", text)
    return "+OK\n"


COMMANDS: dict[str, Callable[["Switch", str], str]] = {
    "status": cmd_status, "version": cmd_version, "originate": cmd_originate, "show": cmd_show,
    "uuid_answer": cmd_uuid_answer, "uuid_kill": cmd_uuid_kill, "uuid_setvar": cmd_uuid_setvar,
    "uuid_setvar_multi": cmd_uuid_setvar_multi, "uuid_getvar": cmd_uuid_getvar,
    "uuid_exists": cmd_uuid_exists, "uuid_broadcast": cmd_uuid_broadcast, "uuid_break": cmd_uuid_break,
    "uuid_send_dtmf": cmd_uuid_send_dtmf, "uuid_recv_dtmf": cmd_uuid_recv_dtmf, "uuid_park": cmd_uuid_park,
    "uuid_transfer": cmd_uuid_transfer, "uuid_bridge": cmd_uuid_bridge, "uuid_record": cmd_uuid_record,
    "uuid_hold": cmd_uuid_hold, "uuid_dump": cmd_uuid_dump, "hupall": cmd_hupall, "sofia": cmd_sofia,
    "sofia_contact": cmd_sofia_contact, "log": cmd_log,
}


def execute_api(switch: "Switch", line: str) -> str:
    command, _, args = line.strip().partition(" ")
    args = args.strip()
    event = switch.new_event("API")
    event.add("API-Command", command)
    if args:
        event.add("API-Command-Argument", args)
    switch.fire(event)
    handler = COMMANDS.get(command)
    if handler is None:
        return f"-ERR {command} Command not found!\n"
    return handler(switch, args)
