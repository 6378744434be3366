"""What the IVR reads from and writes to PostgreSQL (survey answers, callback requests,
recording metadata, caller lookups) and its HTTP lookups.

Writes that the caller does not wait for (survey answers, recording rows) run in their own
greenlet: a database that is slow or away costs a log line, never the call. Lookups run the
flow's named, parameterised query text with variables as parameters: never SQL built from data.
"""
from __future__ import annotations

import json
import logging
import re
import urllib.error
import urllib.parse
import urllib.request
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Callable, Mapping

import gevent

log = logging.getLogger(__name__)

Connect = Callable[[], AbstractContextManager]  # a psycopg connection (Database.connect, pool.connection)
MAX_VALUE = 256  # a lookup result longer than this is cut: it is data for prompts and conditions


class IvrStore:
    def __init__(self, connect: Connect | None) -> None:
        self.connect = connect
        self._pending: set[gevent.Greenlet] = set()

    # --- writes off the caller's path ------------------------------------------------------------
    def _background(self, what: str, sql: str, params: tuple) -> None:
        if self.connect is None:
            log.warning("no database: %s not stored: %s", what, params)
            return

        def write() -> None:
            try:
                with self.connect() as conn:
                    conn.execute(sql, params)
                    conn.commit()
            except Exception as exc:  # the call goes on; the row is lost and said so
                log.error("%s not stored (%s): %s", what, exc, params)

        greenlet = gevent.spawn(write)
        self._pending.add(greenlet)
        greenlet.link(self._pending.discard)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait for the writes in flight (shutdown, tests)."""
        gevent.joinall(list(self._pending), timeout=timeout)

    def survey_answer(self, call_uuid: str, survey: str, question: str, answer: str, *, flow: str,
                      caller_id: str, at: datetime) -> None:
        self._background("survey answer",
                         "INSERT INTO survey_answer (call_uuid, survey, question, answer, flow, caller_id, answered_at)"
                         " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (call_uuid, survey, question)"
                         " DO UPDATE SET answer = EXCLUDED.answer, answered_at = EXCLUDED.answered_at",
                         (call_uuid, survey, question, answer, flow, caller_id, at))

    def recording(self, call_uuid: str, mailbox: str, path: str, seconds: float, *, flow: str, caller_id: str,
                  at: datetime) -> None:
        self._background("recording metadata",
                         "INSERT INTO ivr_recording (call_uuid, mailbox, path, seconds, flow, caller_id, recorded_at)"
                         " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (path) DO NOTHING",
                         (call_uuid, mailbox, path, seconds, flow, caller_id, at))

    # --- what the caller waits for ------------------------------------------------------------------
    def callback_request(self, call_uuid: str, queue: str, number: str, *, flow: str, joined: float,
                         at: datetime) -> bool:
        """Store a callback request now (the caller is about to be told it is taken)."""
        if self.connect is None:
            return False
        try:
            with self.connect() as conn:
                conn.execute("INSERT INTO callback_request (call_uuid, queue, number, flow, joined_at, requested_at)"
                             " VALUES (%s, %s, %s, %s, to_timestamp(%s), %s) ON CONFLICT (call_uuid, queue) DO NOTHING",
                             (call_uuid, queue, number, flow, joined, at))
                conn.commit()
            return True
        except Exception as exc:
            log.error("callback request of %s for %s not stored: %s", number, queue, exc)
            return False

    def query(self, sql: str, params: Mapping[str, str], timeout: float) -> dict[str, str] | None:
        """The first row of a named query, as text; None when there is none. Raises on failure."""
        if self.connect is None:
            raise LookupError("no database configured")
        with self.connect() as conn:
            with conn.transaction():
                conn.execute("SELECT set_config('statement_timeout', %s, true)", (str(int(timeout * 1000)),))
                cursor = conn.execute(sql, dict(params))
                row = cursor.fetchone()
                names = [c.name for c in cursor.description or ()]
        return None if row is None else {n: _text(v) for n, v in zip(names, row)}


def http_lookup(url: str, timeout: float) -> dict[str, str] | None:
    """GET a JSON object; None on 404 or an empty object. Raises on anything else going wrong."""
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "callrouter-ivr"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) checked on load
            body = json.loads(response.read(65536) or b"{}")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise
    if not isinstance(body, dict):
        raise ValueError("the lookup did not answer with a JSON object")
    return {str(k): _text(v) for k, v in body.items()} or None


def fill_url(template: str, variables: Mapping[str, str]) -> str:
    """${variable} in a URL template, each value percent-encoded (a value cannot change the URL's shape)."""
    return re.sub(r"\$\{(\w+)\}", lambda m: urllib.parse.quote(variables.get(m[1], ""), safe=""), template)


def _text(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("\r", " ").replace("\n", " ")[:MAX_VALUE]
