"""The gateway protocol and the choice of gateway from settings."""

from __future__ import annotations

import abc
import threading
from datetime import date
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver

from django_voicepassword.client import Balance, CallRecord, SendResult
from django_voicepassword.conf import ConfigurationError, settings

__all__ = ["BaseGateway", "get_gateway"]


class BaseGateway(abc.ABC):
    """What every gateway does: the provider's six operations, nothing more.

    The arguments and results are those of
    :class:`~django_voicepassword.client.VoicePasswordClient`; so are the
    exceptions (:mod:`django_voicepassword.exceptions`), which a gateway that
    places nothing raises for the same bad arguments.
    """

    @abc.abstractmethod
    def flash_call(
        self,
        number: str,
        *,
        code: str | None = None,
        capacity: int | None = None,
        callback_url: str | None = None,
    ) -> SendResult:
        """Place a flash call: the caller number ends in the code."""

    @abc.abstractmethod
    def voice_call(
        self,
        number: str,
        *,
        code: str | None = None,
        repeat: bool = False,
        ani: str | None = None,
        callback_url: str | None = None,
    ) -> SendResult:
        """Place a call in which a robot speaks the code."""

    @abc.abstractmethod
    def sms(self, request_id: str, *, callback_url: str | None = None) -> SendResult:
        """Send the code of the earlier request ``request_id`` by SMS."""

    @abc.abstractmethod
    def balance(self) -> Balance:
        """The account balance."""

    @abc.abstractmethod
    def state(self, request_id: str) -> CallRecord:
        """The provider's record of one request."""

    @abc.abstractmethod
    def daily(self, day: date) -> list[CallRecord]:
        """The provider's records of every request on ``day`` (Moscow time).

        A :class:`~django_voicepassword.client.DailyReport` says whether it is
        the whole day; a plain list is taken for a whole day, so return a
        ``DailyReport`` when some records could not be read, or reconciliation
        may mark a call that was placed ``not_placed``.
        """

    def close(self) -> None:  # noqa: B027  (optional: most gateways hold nothing)
        """Release connections; the gateway must not be used afterwards."""


_lock = threading.Lock()
_gateway: BaseGateway | None = None


def get_gateway() -> BaseGateway:
    """The gateway configured by ``GATEWAY``, built once and shared.

    Sharing it keeps one pool of HTTP connections per process. It is rebuilt
    when ``VOICEPASSWORD`` changes (``override_settings`` in tests).
    """
    global _gateway
    gateway = _gateway
    if gateway is not None:
        return gateway
    with _lock:
        if _gateway is None:
            klass = settings.GATEWAY
            if not (isinstance(klass, type) and issubclass(klass, BaseGateway)):
                raise ConfigurationError(
                    f"VOICEPASSWORD['GATEWAY'] must name a BaseGateway subclass, not {klass!r}."
                )
            _gateway = klass()
        return _gateway


def reset_gateway() -> None:
    """Close and forget the shared gateway; the next call builds a new one."""
    global _gateway
    with _lock:
        if _gateway is not None:
            _gateway.close()
        _gateway = None


@receiver(setting_changed)
def _reset_on_change(*, setting: str, **kwargs: Any) -> None:
    if setting == "VOICEPASSWORD":
        reset_gateway()
