"""django-allauth's account adapter over django-voicepassword's calls, limits and numbers.

allauth runs the flows (sign-up, login by code, phone verification and
change, reauthentication, headless or HTML) and keeps and checks the code;
this adapter implements its phone hooks so that the code goes out by a flash
call (the caller number ends in it) or a voice call through
:func:`~django_voicepassword.verification.deliver_code`: recorded as a
:class:`~django_voicepassword.models.Call`, counted by the limits and the
daily budget, visible in the admin. Numbers are stored by the package's
adapter (the ``ADAPTER`` setting: :class:`~django_voicepassword.models.PhoneNumber`
by default, a user field with ``UserFieldAdapter``), verified ones only; a
number allauth sets before it is verified waits in
:class:`~django_voicepassword.contrib.allauth.models.PendingPhoneNumber`.

Threat model (as :mod:`django_voicepassword.verification`, with allauth
keeping the code): a request for a number without an account places no call
but is counted and waits as long as a real send; a refused limit answers
every number alike; and, while allauth prevents enumeration, a call the
provider refused or could not place is answered as a sent one (logged, and
kept on the ``Call`` row), since an unknown number is never called and so
never fails. What allauth keeps: the code in clear, in the session's login
state, until it is entered or expires (``docs/howto/allauth.md``).
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from allauth.account import app_settings as allauth_settings
from allauth.account.adapter import DefaultAccountAdapter
from allauth.core import context
from allauth.core.exceptions import ImmediateHttpResponse
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpResponse, HttpResponseRedirect, JsonResponse
from django.utils.translation import gettext_lazy as _

from django_voicepassword.adapter import UserFieldAdapter
from django_voicepassword.adapter import get_adapter as get_phone_adapter
from django_voicepassword.contrib.allauth.middleware import REFUSAL_ATTRIBUTE
from django_voicepassword.contrib.allauth.models import PendingPhoneNumber
from django_voicepassword.models import PhoneNumber
from django_voicepassword.phone import InvalidPhoneNumber, mask, normalize
from django_voicepassword.ratelimit import LimitExceeded
from django_voicepassword.verification import CODE_LENGTH, Delivery, deliver_code

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.http import HttpRequest
    from django_stubs_ext import StrPromise

__all__ = ["VoicePasswordAccountAdapter", "VoicePasswordAccountAdapterMixin"]

logger = logging.getLogger(__name__)

CHANNELS = ("flash_call", "voice_call")

#: Shown when the provider refused the call or could not be reached, where
#: saying so tells nothing about accounts (see ``hides_send_failures``).
NOT_SENT_MESSAGE = _("We could not call this number just now. Try again later.")


class VoicePasswordAccountAdapterMixin:
    """allauth's phone hooks over django-voicepassword; put it first on the site's adapter.

    ``class AccountAdapter(VoicePasswordAccountAdapterMixin, DefaultAccountAdapter)``.
    Two class attributes configure it (a subclass changes them):

    - ``voicepassword_channel``: ``"flash_call"`` (default; the person
      enters the last 4 digits of the number that calls) or ``"voice_call"``
      (a robot says the code);
    - ``voicepassword_hide_send_failures``: whether a call the provider
      refused or could not place is answered as a sent one. ``None`` (default):
      while ``ACCOUNT_PREVENT_ENUMERATION`` is on, for every send but a
      reauthentication (the person is logged in and the number is theirs).
    """

    voicepassword_channel: ClassVar[str] = "flash_call"
    voicepassword_hide_send_failures: ClassVar[bool | None] = None

    # --- numbers --------------------------------------------------------------------

    def phone_form_field(self, **kwargs: Any) -> Any:
        """allauth's phone field, reading numbers as the package does.

        allauth's own field accepts only ``+`` and digits; the package's
        :func:`~django_voicepassword.phone.normalize` (through
        :meth:`clean_phone`) also reads ``8 999 000-00-01`` and applies the
        site's region and number-type policy.
        """
        kwargs.setdefault("validators", [])
        return super().phone_form_field(**kwargs)  # type: ignore[misc]  # allauth's adapter

    def clean_phone(self, phone: str) -> str:
        """The number in E.164 (``+79990000001``), or a ``ValidationError`` saying why not."""
        try:
            number = normalize(phone)
        except InvalidPhoneNumber as error:
            raise ValidationError(error.message, code=f"phone_{error.code}") from None
        return "+" + number

    def get_user_by_phone(self, phone: str) -> AbstractBaseUser | None:
        """The user who verified ``phone`` (the package's adapter), or ``None``.

        A number that is only pending (typed at sign-up, never proved) finds
        nobody: anyone can type anyone's number.
        """
        number = _normalized_or_none(phone)
        if number is None:
            return None
        return get_phone_adapter().get_user(number)

    def get_phone(self, user: AbstractBaseUser) -> tuple[str, bool] | None:
        """``(number, verified)`` in E.164: the pending number, else the verified one."""
        pending = (
            PendingPhoneNumber.objects.filter(user_id=user.pk)
            .values_list("number", flat=True)
            .first()
        )
        if pending:
            return "+" + pending, False
        verified = self.voicepassword_verified_number(user)
        return ("+" + verified, True) if verified else None

    def set_phone(self, user: AbstractBaseUser, phone: str, verified: bool) -> None:
        """Give ``user`` the number ``phone``: verified (:meth:`set_phone_verified`) or pending."""
        if verified:
            self.set_phone_verified(user, phone)
            return
        PendingPhoneNumber.objects.update_or_create(
            user_id=user.pk, defaults={"number": normalize(phone, enforce_policy=False)}
        )

    def set_phone_verified(self, user: AbstractBaseUser, phone: str) -> None:
        """Record that ``user`` proved ``phone``: it becomes their one number.

        Stored by the package's adapter (``mark_verified``: taken from whoever
        had it, numbers are recycled); allauth knows one number per user, so
        the user's other verified numbers and the pending one are removed.
        """
        number = normalize(phone, enforce_policy=False)
        with transaction.atomic():
            get_phone_adapter().mark_verified(user, number)
            PhoneNumber.objects.filter(user_id=user.pk).exclude(number=number).delete()
            PendingPhoneNumber.objects.filter(user_id=user.pk).delete()

    def voicepassword_verified_number(self, user: AbstractBaseUser) -> str | None:
        """The number ``user`` verified (``UserFieldAdapter``: its field), or ``None``."""
        phone_adapter = get_phone_adapter()
        if isinstance(phone_adapter, UserFieldAdapter):
            value = getattr(user, phone_adapter.field, None)
            return str(value) if value else None
        return (
            PhoneNumber.objects.filter(user_id=user.pk)
            .order_by("-verified_at")
            .values_list("number", flat=True)
            .first()
        )

    # --- codes ----------------------------------------------------------------------

    def generate_phone_verification_code(self, *, user: AbstractBaseUser, phone: str) -> str:
        """4 digits from :mod:`secrets`, whatever ``ACCOUNT_PHONE_VERIFICATION_CODE_FORMAT`` says.

        A flash call's caller number ends in the code and the provider takes
        4 digits (``flashcall.code``); a voice call says 4 digits too.
        """
        return _new_code()

    def send_verification_code_sms(
        self, user: AbstractBaseUser, phone: str, code: str, **kwargs: Any
    ) -> None:
        """Call ``phone`` with ``code``: a flash call or a voice call, as configured.

        A refusal by the limits or the budget is shown as allauth shows its
        errors (a message on the page, a JSON error in the headless API) with
        ``Retry-After``. A call the provider refused or could not place is
        shown too, unless :meth:`voicepassword_hides_send_failures` says it
        must look sent.
        """
        number = normalize(phone, enforce_policy=False)
        kind = "verified" if self.voicepassword_verified_number(user) == number else "new"
        delivery = self._voicepassword_deliver(phone, code, user=user, kind=kind)
        if delivery.placed:
            return
        if self.voicepassword_hides_send_failures(
            reauthentication=bool(kwargs.get("reauthentication"))
        ):
            logger.warning(
                "Code to %s not sent (%s); answered as sent, as for a number without an account",
                mask(number),
                type(delivery.error).__name__,
            )
            return
        self.voicepassword_refuse(NOT_SENT_MESSAGE, code="voicepassword_not_sent", status=503)

    def send_unknown_account_sms(self, phone: str, **kwargs: Any) -> None:
        """Place no call for a number without an account: count it, and wait as long as a call."""
        self._voicepassword_deliver(phone, None)

    def send_account_already_exists_sms(self, phone: str) -> None:
        """Place no call for a sign-up by a taken number: count it, and wait as long as a call."""
        self._voicepassword_deliver(phone, None)

    def voicepassword_hides_send_failures(self, *, reauthentication: bool = False) -> bool:
        """Whether a failed call is answered as a sent one (see the class docstring)."""
        if self.voicepassword_hide_send_failures is not None:
            return self.voicepassword_hide_send_failures
        return bool(allauth_settings.PREVENT_ENUMERATION) and not reauthentication

    def _voicepassword_deliver(
        self,
        phone: str,
        code: str | None,
        *,
        user: AbstractBaseUser | None = None,
        kind: str = "new",
    ) -> Delivery:
        channel = self.voicepassword_channel
        if channel not in CHANNELS:
            raise ValueError(f"voicepassword_channel must be one of {CHANNELS}, not {channel!r}")
        request = context.request
        try:
            return deliver_code(
                phone,
                code if code is not None else _new_code(),  # a stand-in's code is never sent
                channel,
                request=request,
                user=user,
                call=code is not None,
                kind="verified" if kind == "verified" else "new",
            )
        except LimitExceeded as error:
            self.voicepassword_refuse(
                error.message,
                code="voicepassword_limit",
                status=429,
                retry_after=error.retry_after,
            )
        except InvalidPhoneNumber as error:
            self.voicepassword_refuse(error.message, code="invalid_phone", status=400)

    def voicepassword_refuse(
        self,
        message: str | StrPromise,
        *,
        code: str,
        status: int,
        retry_after: int | None = None,
    ) -> NoReturn:
        """Stop the flow and answer with ``message`` the way allauth answers errors.

        The headless API gets allauth's error shape (``{"status": ...,
        "errors": [{"message": ..., "code": ...}]}``) with ``status``; an HTML
        page gets the message (``messages.error``) and a redirect back to
        itself, where allauth's layout shows it. Raised as allauth's
        ``ImmediateHttpResponse``, which its middleware answers (and
        :class:`~django_voicepassword.contrib.allauth.middleware.AllauthErrorsMiddleware`
        where allauth swallows it); allauth's flow state is left as before
        the send.
        """
        request = context.request
        response: HttpResponse
        if _headless_client(request):
            response = _headless_error(request, str(message), code=code, status=status)
        else:
            self.add_message(  # type: ignore[attr-defined]  # allauth's adapter
                request, messages.ERROR, message=str(message)
            )
            response = HttpResponseRedirect(request.get_full_path())
        if retry_after is not None:
            response["Retry-After"] = str(retry_after)
        # Also on the request: where allauth swallows the exception (its
        # headless sign-up), AllauthErrorsMiddleware answers with it.
        setattr(request, REFUSAL_ATTRIBUTE, response)
        raise ImmediateHttpResponse(response)


class VoicePasswordAccountAdapter(VoicePasswordAccountAdapterMixin, DefaultAccountAdapter):  # type: ignore[misc]
    """allauth's default adapter with the phone hooks of django-voicepassword.

    ``ACCOUNT_ADAPTER =
    "django_voicepassword.contrib.allauth.adapter.VoicePasswordAccountAdapter"``.
    """


def _new_code() -> str:
    return f"{secrets.randbelow(10**CODE_LENGTH):0{CODE_LENGTH}d}"


def _normalized_or_none(phone: str) -> str | None:
    try:
        return normalize(phone)
    except InvalidPhoneNumber:
        return None


def _headless_client(request: HttpRequest) -> bool:
    """Whether ``request`` is one of allauth's headless API (``request.allauth.headless``)."""
    allauth_state = getattr(request, "allauth", None)
    return getattr(getattr(allauth_state, "headless", None), "client", None) is not None


def _headless_error(request: HttpRequest, message: str, *, code: str, status: int) -> HttpResponse:
    """allauth headless's error response (its own class, so that its meta is there too)."""
    errors = [{"message": message, "code": code}]
    try:
        from allauth.headless.internal.restkit.response import APIResponse
    except ImportError:  # an allauth that moved it: the same shape by hand
        return JsonResponse({"status": status, "errors": errors}, status=status)
    response: HttpResponse = APIResponse(request, errors=errors, status=status)
    return response
