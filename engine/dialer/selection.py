"""Which contacts to dial next, and what an attempt's disposition does to its contact: pure
functions over model dataclasses (the store loads the candidates, the live layer asks here)."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Container, Iterable, Mapping

from engine.dialer.compliance import OFCOM_NO_REDIAL, DialHistory, refuse_dial
from engine.dialer.model import AbandonRule, Campaign, Contact, ContactState, Disposition

_FINAL = {Disposition.ANSWERED.value: ContactState.DONE, Disposition.DNC.value: ContactState.DNC,
          Disposition.INVALID.value: ContactState.INVALID}
_NO_HISTORY = DialHistory()


def next_contacts(campaign: Campaign, contacts: Iterable[Contact], now: datetime, limit: int, *,
                  history: Mapping[int, DialHistory] | None = None,
                  dnc: Container[str] = frozenset()) -> list[Contact]:
    """Up to `limit` contacts that may be dialled now, best first: fresh before due retries (or
    the reverse with `campaign.retry_first`), then priority, then who has waited longest."""
    history = history or {}
    eligible = []
    for contact in contacts:
        if contact.state not in (ContactState.NEW, ContactState.RETRY):
            continue
        if contact.next_attempt_at is not None and contact.next_attempt_at > now:
            continue
        if refuse_dial(campaign, contact, now, contact.phone in dnc, history.get(contact.id, _NO_HISTORY)):
            continue
        eligible.append(contact)

    def order(contact: Contact) -> tuple:
        fresh = contact.state is ContactState.NEW
        due = contact.next_attempt_at or contact.imported_at or now
        return (fresh == campaign.retry_first, -contact.priority, due, contact.id)

    return sorted(eligible, key=order)[:max(0, limit)]


def after_attempt(campaign: Campaign, contact: Contact, disposition: str, now: datetime) -> Contact:
    """The contact once an attempt ended with `disposition` (system or agent): done, or due again
    by the campaign's retry rule, within its limits. Agent dispositions without a rule end it."""
    attempts = contact.attempts + 1
    final = _FINAL.get(disposition)
    if final is not None:
        return dataclasses.replace(contact, attempts=attempts, state=final, next_attempt_at=None)
    rule = campaign.retry_rule(disposition)
    used = contact.retries.get(disposition, 0)
    if rule is None or used >= rule.max_retries or attempts >= campaign.max_attempts:
        return dataclasses.replace(contact, attempts=attempts, state=ContactState.DONE, next_attempt_at=None)
    delay = timedelta(seconds=rule.delay)
    if disposition == Disposition.ABANDONED.value and campaign.abandon_rule is AbandonRule.OFCOM:
        delay = max(delay, OFCOM_NO_REDIAL)
    return dataclasses.replace(contact, attempts=attempts, state=ContactState.RETRY, next_attempt_at=now + delay,
                               retries={**contact.retries, disposition: used + 1})


def callback(contact: Contact, at: datetime) -> Contact:
    """A callback an agent scheduled or the IVR's caller asked for: due at `at`, first in line."""
    return dataclasses.replace(contact, state=ContactState.RETRY, next_attempt_at=at,
                               priority=max(contact.priority, 100))
