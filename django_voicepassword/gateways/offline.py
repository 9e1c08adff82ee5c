"""Gateways that place nothing: answers come from the emulator, in-process.

:class:`ConsoleGateway` and :class:`LocmemGateway` send every request through
the real :class:`~django_voicepassword.client.VoicePasswordClient`, whose
session is wired to an in-process :class:`~django_voicepassword.emulator.Emulator`
instead of the network. So they refuse the same bad arguments with the same
exceptions, answer in the same shapes, and honour the emulator's test numbers:
``79990000020`` raises ``NumberNotValidError`` here too, which lets a site test
its error handling without a server.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import date
from typing import Any, TextIO

import requests

import django_voicepassword
from django_voicepassword.client import (
    Balance,
    CallRecord,
    DailyReport,
    SendResult,
    VoicePasswordClient,
)
from django_voicepassword.emulator.core import Emulator
from django_voicepassword.emulator.wire import EmulatorAdapter
from django_voicepassword.gateways.base import BaseGateway

__all__ = ["ConsoleGateway", "LocmemGateway", "OfflineGateway", "OutboxMessage"]

# Never resolved: the emulator adapter answers everything under it.
_OFFLINE_URL = "http://voicepassword.offline/api/voice-password/"


@dataclass(frozen=True)
class OutboxMessage:
    """One request an offline gateway would have sent to ``send/``.

    ``kind`` is ``"flash_call"``, ``"voice_call"`` or ``"sms"``; ``number`` the
    subscriber; ``code`` what the subscriber would see or hear (read from the
    answer, so also for a service-generated code); ``payload`` the JSON body
    that would have been sent (the API key travels in a header and is not in
    it); ``result`` what the gateway returned.
    """

    kind: str
    number: str
    code: str | None
    payload: dict[str, Any]
    result: SendResult


class OfflineGateway(BaseGateway):
    """Answers every request from an in-process emulator; subclasses report the sends."""

    def __init__(self, emulator: Emulator | None = None) -> None:
        # Ids start at 1 so that tests read naturally; callbacks are never
        # delivered, there being no site URL to deliver them to.
        self.emulator = emulator or Emulator(callback_delay=0.0, id_start=1)
        session = requests.Session()
        session.mount(_OFFLINE_URL, EmulatorAdapter(self.emulator))
        self.client = VoicePasswordClient(
            self.emulator.api_key, base_url=_OFFLINE_URL, session=session, get_retries=0
        )

    def _sent(self, kind: str, result: SendResult) -> SendResult:
        # Found by id, not as the last entry: another thread may have sent since.
        entry = next(e for e in reversed(self.emulator.sends()) if e.call_id == result.id)
        self.report(
            OutboxMessage(
                kind=kind,
                number=result.number,
                code=result.code,
                payload=dict(entry.payload or {}),
                result=result,
            )
        )
        return result

    def report(self, message: OutboxMessage) -> None:
        """Do what the gateway does with a request it would have sent."""

    def flash_call(
        self,
        number: str,
        *,
        code: str | None = None,
        capacity: int | None = None,
        callback_url: str | None = None,
    ) -> SendResult:
        """Pretend to place a flash call."""
        result = self.client.flash_call(
            number, code=code, capacity=capacity, callback_url=callback_url
        )
        return self._sent("flash_call", result)

    def voice_call(
        self,
        number: str,
        *,
        code: str | None = None,
        repeat: bool = False,
        ani: str | None = None,
        callback_url: str | None = None,
    ) -> SendResult:
        """Pretend to place a voice call."""
        result = self.client.voice_call(
            number, code=code, repeat=repeat, ani=ani, callback_url=callback_url
        )
        return self._sent("voice_call", result)

    def sms(self, request_id: str, *, callback_url: str | None = None) -> SendResult:
        """Pretend to send the SMS fallback of ``request_id``."""
        return self._sent("sms", self.client.sms(request_id, callback_url=callback_url))

    def balance(self) -> Balance:
        """The emulator's balance (charged for every pretended call)."""
        return self.client.balance()

    def state(self, request_id: str) -> CallRecord:
        """The emulator's record of ``request_id``."""
        return self.client.state(request_id)

    def daily(self, day: date) -> DailyReport:
        """The emulator's records of ``day``."""
        return self.client.daily(day)

    def close(self) -> None:
        """Close the client."""
        self.client.close()


class LocmemGateway(OfflineGateway):
    """Records every request in ``django_voicepassword.outbox``, like ``mail.outbox``.

    For tests: assign ``django_voicepassword.outbox = []`` (or clear it) before
    the code under test runs, then read what it would have sent, including the
    code the subscriber would have received.
    """

    def report(self, message: OutboxMessage) -> None:
        """Append ``message`` to ``django_voicepassword.outbox``."""
        # Looked up at each call: tests may rebind the attribute to a new list.
        django_voicepassword.outbox.append(message)


class ConsoleGateway(OfflineGateway):
    """Prints every request it would have sent, for development. Places nothing.

    The line shows the JSON body and the code, as the console e-mail backend
    shows a whole message: never use it where the output is seen by others.
    """

    def __init__(self, emulator: Emulator | None = None, stream: TextIO | None = None) -> None:
        super().__init__(emulator)
        self.stream = stream

    def report(self, message: OutboxMessage) -> None:
        """Write ``message`` to the stream (standard output by default)."""
        stream = self.stream or sys.stdout
        body = json.dumps(message.payload, ensure_ascii=False, sort_keys=True)
        stream.write(
            f"[voicepassword] {message.kind} to {message.number}: {body} "
            f"-> id {message.result.id}, code {message.code}\n"
        )
        stream.flush()
