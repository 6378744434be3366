"""What the live dialer tests share: a real Engine on a simulated switch and a real PostgreSQL,
the admin API as an operator calls it, the attempts and contacts as PostgreSQL holds them, and
the compliance checks every attempt must pass."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import replace
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg

from engine.app import Engine
from engine.config import ApiSettings, DialerSettings, Secret
from engine.dialer import store
from engine.dialer.model import CallingWindow, Campaign, Contact
from tests.engine.conftest import Centre
from tests.waiting import wait_until

TOKEN = "t0ken"
MESSAGE = "ivr/abandon-message.wav"
WINDOW = CallingWindow(time(8), time(21))


def zone_where(now: datetime, inside: bool) -> str:
    """A fixed-offset zone in which `now` falls inside (or outside) the calling window."""
    for offset in range(-12, 15):
        name = f"Etc/GMT{-offset:+d}" if offset else "UTC"
        local = now.astimezone(ZoneInfo(name)).time()
        # A margin of an hour either way, so the test never straddles the window's edge.
        if inside and time(10) <= local < time(19) or not inside and (local >= time(22) or local < time(6)):
            return name
    raise AssertionError("no zone found")


def add_campaign(dsn: str, campaign: Campaign, phones: dict[str, str], dnc: list[str] = (), start: bool = True,
                 fields: dict[str, dict[str, str]] | None = None) -> None:
    """The campaign, its contacts (phone -> zone; `fields`: phone -> the contact's custom fields)."""
    fields = fields or {}
    with psycopg.connect(dsn) as conn:
        store.create_campaign(conn, campaign)
        store.add_contacts(conn, campaign.name, ((Contact(0, phone, (zone,), fields=fields.get(phone, {})), line)
                                                 for line, (phone, zone) in enumerate(phones.items(), 2)))
        store.add_dnc(conn, dnc, "internal", "test")
        if start:
            store.change_state(conn, campaign.name, "start")


def start_engine(centre: Centre, tmp_path, dsn: str, *, flows: dict[str, str] | None = None,
                 queues: tuple[str, ...] = ("sales",)) -> Engine:
    """An engine on the centre's switch and this database; `flows` (file name -> YAML) join the
    dialplans it loads."""
    config = centre.config(tmp_path, acd=centre.acd(queues))
    for name, text in (flows or {}).items():
        (config.dialplans / name).write_text(text)
    config = replace(config, database_dsn=Secret(dsn), api=ApiSettings(port=0, token=Secret(TOKEN)),
                     dialer=DialerSettings(poll_seconds=0.2, amd_timeout=5.0), shutdown_grace_seconds=0)
    engine = Engine(config, with_metrics=False)
    engine.start()
    assert all(node.wait_up(10) for node in engine.nodes)
    return engine


def api(engine: Engine, path: str, method: str = "GET", expect: int = 200) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{engine.api.port}{path}", method=method,
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            status, body = reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    assert status == expect, (status, body)
    return json.loads(body)


def rows(dsn: str, name: str = "live") -> tuple[list, dict[int, Contact]]:
    with psycopg.connect(dsn) as conn:
        return store.attempts(conn, name), {c.id: c for c in store.load_contacts(conn, name)}


def wait_closed(dsn: str, name: str = "live", timeout: float = 60, skip: tuple[str, ...] = ()) -> None:
    """Until every contact (but `skip`) is closed and every attempt has ended."""
    def closed() -> bool:
        attempts, contacts = rows(dsn, name)
        return all(a.ended_at for a in attempts) and all(
            c.state.value not in ("new", "retry", "dialing") for c in contacts.values() if c.phone not in skip)
    wait_until(closed, timeout=timeout, what=f"campaign {name} to close every contact")


def check_compliance(campaign: Campaign, attempts: list, contacts: dict[int, Contact], dnc: list[str]) -> None:
    """Every attempt: not on the DNC list, inside the contact's calling window, closed with a
    disposition; retries only after a retry rule's delay, never after a final disposition."""
    per_contact = defaultdict(list)
    for a in attempts:
        contact = contacts[a.contact_id]
        assert a.phone not in dnc, a
        local = a.started_at.astimezone(ZoneInfo(contact.timezones[0])).time()
        assert WINDOW.start <= local < WINDOW.end, (a.phone, local)
        assert a.ended_at is not None and a.disposition, a
        per_contact[a.contact_id].append(a)
    for tries in per_contact.values():
        tries.sort(key=lambda a: a.started_at)
        assert len(tries) <= campaign.max_attempts
        for before, after in zip(tries, tries[1:]):
            rule = campaign.retry_rule(before.disposition)
            assert rule is not None, before.disposition  # answered, invalid, DNC: never dialled again
            assert after.started_at - before.ended_at >= timedelta(seconds=rule.delay)


def outbound_truth(centre: Centre) -> dict[str, list]:
    """The switch's truth: the finished outbound calls per number dialled."""
    dialled = defaultdict(list)
    for record in centre.truth.finished:
        if record.direction == "outbound":
            dialled[record.destination].append(record)
    return dialled


def channel_of(centre: Centre, phone: str):
    """The switch's live channel calling `phone`, if any."""
    return next((c for c in list(centre.switch.channels.values())
                 if c.direction == "outbound" and c.profile.destination_number == phone and c.is_up), None)


def press_when_prompted(centre: Centre, phone: str, keys: list[tuple[str, str]], timeout: float = 30) -> None:
    """The called party presses each (prompt, digit)'s digit while the switch plays it that prompt
    waiting for keys: what a person does, through the switch's own uuid_recv_dtmf."""
    for prompt, digit in keys:
        def prompting() -> bool:
            channel = channel_of(centre, phone)
            return (channel is not None and channel.app_stack[-1:] == ["play_and_get_digits"]
                    and prompt in (channel.variables.get("current_application_data") or ""))
        wait_until(prompting, timeout=timeout, what=f"{phone} to hear {prompt}")
        channel = channel_of(centre, phone)
        assert centre.switch.api(f"uuid_recv_dtmf {channel.uuid} {digit}").startswith("+OK")
        wait_until(lambda: not prompting(), timeout=timeout, what=f"{phone} to be done with {prompt}")
