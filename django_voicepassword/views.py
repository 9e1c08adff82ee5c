"""The HTML phone-login and phone-verification flows.

Two pages per flow: a phone form, then a code page (enter the code, ask for a
new one after a countdown, switch to a voice call or, with ``SMS_FALLBACK``, to
an SMS). Everything that sends or checks a code goes through
:mod:`django_voicepassword.verification`; these views only translate its
answers into pages.

What the views promise, whatever the services do:

- **Nothing is sent on GET.** Only a POST (with its CSRF token) starts a
  challenge or sends a code again; the pages themselves are ``never_cache``.
- **A challenge belongs to the session that started it.** The code page of a
  challenge this session did not start (``get_challenge`` says ``None``) sends
  the browser back to the phone form, without a word about why.
- **``next`` is checked twice**: when the phone form is sent (only a same-site
  address is stored in the session, beside the challenge) and again before the
  redirect after the code; anything else goes to ``LOGIN_REDIRECT_URL``.
- **Login cycles the session key** (``django.contrib.auth.login``), so a session
  id planted before the login is worthless after it.
- **The pages do not tell whether a number has an account.** A login for an
  unknown number goes through the same pages with the same texts; the services
  make sure nobody is called.
- **The provider's words never reach the page.** A verification's failed
  call shows a generic sentence; the error is logged (with the number
  masked). A login's failed call shows the code page, as for a number without
  an account (the services answer it as sent).
- Views run outside a transaction (``non_atomic_requests``): a call is
  recorded before the provider is asked, and that record must be committed.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlencode

from django.conf import settings as django_settings
from django.contrib import messages
from django.contrib.auth import REDIRECT_FIELD_NAME, authenticate, login
from django.contrib.auth.mixins import LoginRequiredMixin
from django.db import OperationalError, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import resolve_url
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext, gettext_lazy, ngettext
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters

from django_voicepassword import verification, workflow
from django_voicepassword.auth_backends import atomic_login
from django_voicepassword.exceptions import VoicePasswordError
from django_voicepassword.forms import CodeForm, PhoneForm
from django_voicepassword.models import Call, Challenge
from django_voicepassword.phone import InvalidPhoneNumber, mask
from django_voicepassword.ratelimit import LimitExceeded, retry_phrase

if TYPE_CHECKING:
    from uuid import UUID

    from django_stubs_ext import StrOrPromise

__all__ = [
    "BACKEND",
    "CodeView",
    "LoginCodeView",
    "LoginPhoneView",
    "PhoneView",
    "VerifyCodeView",
    "VerifyPhoneView",
    "urlpatterns",
]

logger = logging.getLogger(__name__)

#: The authentication backend a phone login logs in with. The site lists it in
#: ``AUTHENTICATION_BACKENDS``, or the login cannot be kept across requests.
BACKEND = "django_voicepassword.auth_backends.PhoneCodeBackend"

# The session key of the ``next`` addresses, per challenge id. A few are kept,
# so two tabs with two logins each keep their own.
_NEXT_KEY = "_voicepassword_next"
_NEXT_KEPT = 5

#: Shown for every provider failure: its own words are for the log, not the page.
PROVIDER_FAILED = gettext_lazy("We could not call you just now. Please try again later.")
WRONG_CHANNEL = gettext_lazy("This way of sending the code is not available.")
#: Shown when the login could not be stored (the database is locked or down);
#: the code was not used up.
LOGIN_FAILED = gettext_lazy("We could not log you in just now. Please enter the code again.")
#: Seconds to wait before entering the code again after :data:`LOGIN_FAILED`.
LOGIN_RETRY_AFTER = 2
#: Why a code page has ended, when the services did not say.
ENDED = {
    "expired": gettext_lazy("This code has expired."),
    "exhausted": gettext_lazy("Too many wrong codes were entered. You can ask for a new code."),
    "used": gettext_lazy("This code has already been used."),
    # A send by the worker (ASYNC_SEND) that placed nothing: not "expired".
    "not_sent": PROVIDER_FAILED,
}


def _with_retry_after(response: HttpResponse, seconds: int | float | None) -> HttpResponse:
    if seconds and seconds > 0:
        response["Retry-After"] = str(math.ceil(seconds))
    return response


def _safe_next(request: HttpRequest, url: str | None) -> str:
    """``url`` when it is an address on this site, else ``""``."""
    if url and url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return url
    return ""


def _remember_next(request: HttpRequest, challenge: Challenge, url: str) -> None:
    stored = dict(request.session.get(_NEXT_KEY) or {})
    if not url and str(challenge.pk) not in stored:
        # Nothing to remember or forget: the session stays as saved (no second save).
        return
    stored.pop(str(challenge.pk), None)
    if url:
        stored[str(challenge.pk)] = url
    request.session[_NEXT_KEY] = dict(list(stored.items())[-_NEXT_KEPT:])


def _recall_next(request: HttpRequest, challenge: Challenge, *, forget: bool = False) -> str:
    stored = dict(request.session.get(_NEXT_KEY) or {})
    url = stored.pop(str(challenge.pk), "")
    if forget:
        request.session[_NEXT_KEY] = stored
    return _safe_next(request, url if isinstance(url, str) else "")


def _log_provider_failure(error: Exception, channel: str, number: str) -> None:
    # The number masked. The provider's error (the cause of a ChallengeError)
    # is logged by its repr: class, message and error code, never the API key
    # (exceptions.py guarantees that).
    cause = error.__cause__ if isinstance(error, verification.ChallengeError) else error
    logger.error("Could not send a %s code to %s: %r", channel, mask(number), cause or error)


@method_decorator(
    [
        sensitive_post_parameters("number", "code"),
        csrf_protect,
        never_cache,
        transaction.non_atomic_requests,
    ],
    name="dispatch",
)
class _FlowView(View):
    """What both pages of both flows share: the purpose, the URL names, templates."""

    #: ``Challenge.Purpose`` of the flow.
    purpose: ClassVar[str] = Challenge.Purpose.LOGIN
    #: URL names of the flow's two pages.
    phone_url_name: ClassVar[str] = "voicepassword:login"
    code_url_name: ClassVar[str] = "voicepassword:login_code"
    #: Templates tried in order; the first is the flow's own, for sites to override.
    template_names: ClassVar[list[str]] = []

    def page_title(self) -> StrOrPromise:
        """The heading of the flow's pages."""
        if self.purpose == Challenge.Purpose.VERIFY:
            return gettext_lazy("Verify your phone number")
        return gettext_lazy("Log in by phone")

    def render(
        self, context: dict[str, Any], *, status: int = 200, retry_after: float | None = None
    ) -> HttpResponse:
        """The page with ``context``, the flow's title and purpose added."""
        context.setdefault("title", self.page_title())
        context["purpose"] = self.purpose
        response = TemplateResponse(self.request, self.template_names, context, status=status)
        return _with_retry_after(response, retry_after)

    def phone_url(self, next_url: str = "") -> str:
        """The phone form of the flow, carrying ``next`` when there is one."""
        url = reverse(self.phone_url_name)
        return f"{url}?{urlencode({REDIRECT_FIELD_NAME: next_url})}" if next_url else url


class PhoneView(_FlowView):
    """The phone form: ``GET`` shows it, ``POST`` sends the first code."""

    template_names: ClassVar[list[str]] = ["voicepassword/phone.html"]

    def challenge_user(self) -> Any:
        """The user the challenge is for: nobody for a login."""
        return None

    def get(self, request: HttpRequest) -> HttpResponse:
        """Show the form; nothing is sent."""
        form = PhoneForm(initial={"next": request.GET.get(REDIRECT_FIELD_NAME, "")})
        return self.render({"form": form})

    def post(self, request: HttpRequest) -> HttpResponse:
        """Start a challenge for the number and go to its code page."""
        form = PhoneForm(request.POST)
        if not form.is_valid():
            return self.render({"form": form})
        number: str = form.cleaned_data["number"]
        channel = Call.Channel.FLASH_CALL
        try:
            # "+": the number is normalized, so unambiguous in any region.
            challenge = verification.start_challenge(
                "+" + number,
                channel,
                request,
                purpose=self.purpose,
                user=self.challenge_user(),
            )
        except InvalidPhoneNumber as error:
            form.add_error("number", error.message)
            return self.render({"form": form})
        except LimitExceeded as error:
            form.add_error(None, error.message)
            return self.render({"form": form}, status=429, retry_after=error.retry_after)
        except (verification.ChallengeError, VoicePasswordError) as error:
            # channel_unavailable: the provider refused or could not be reached.
            _log_provider_failure(error, channel, number)
            form.add_error(None, PROVIDER_FAILED)
            return self.render({"form": form}, status=503)
        _remember_next(request, challenge, _safe_next(request, form.cleaned_data["next"]))
        return HttpResponseRedirect(reverse(self.code_url_name, args=[challenge.pk]))


class CodeView(_FlowView):
    """The code page: ``POST`` checks a code, or (``resend=<channel>``) sends a new one."""

    template_names: ClassVar[list[str]] = ["voicepassword/code.html"]

    def get_challenge(self, challenge_id: UUID) -> Challenge | None:
        """The challenge, if this session started it for this flow."""
        challenge = verification.get_challenge(self.request, challenge_id)
        if challenge is None or challenge.purpose != self.purpose:
            return None
        return challenge

    def restart(self, next_url: str = "") -> HttpResponseRedirect:
        """Back to the phone form."""
        return HttpResponseRedirect(self.phone_url(next_url))

    def ended_reason(self, challenge: Challenge, info: dict[str, Any]) -> str | None:
        """Why no code can be entered any more (a key of ``ENDED``), or ``None``."""
        if challenge.verified_at is not None:
            return "used"
        if verification.send_state(challenge) == "failed":
            return "not_sent"
        if info.get("expires_in", 1) <= 0:
            return "expired"
        if info.get("attempts_left", 1) <= 0:
            return "exhausted"
        return None

    def render_code(
        self,
        challenge: Challenge,
        form: CodeForm | None = None,
        *,
        error: StrOrPromise | None = None,
        ended: StrOrPromise | None = None,
        status: int = 200,
        retry_after: float | None = None,
    ) -> HttpResponse:
        """The code page of ``challenge``; ``ended`` replaces the form with a way back."""
        info = verification.challenge_info(challenge)
        if ended is None and (reason := self.ended_reason(challenge, info)):
            ended = ENDED[reason]
        if form is None:
            form = CodeForm(code_length=info["code_length"])
        if error:
            form.point_to_alert()
        channels = list(info.get("channels") or [])
        resend_in = max(0, math.ceil(info.get("resend_in") or 0))
        context = {
            "form": form,
            "info": info,
            "channel": info["channel"],
            "masked_number": info["masked_number"],
            "code_length": info["code_length"],
            "caller_prefix": info.get("caller_prefix") or "",
            "resend_in": resend_in,
            "resend_clock": f"{resend_in // 60}:{resend_in % 60:02d}",
            "attempts_left": info.get("attempts_left"),
            # The workflow's next step, for the line "if the code does not come...".
            "next_step_in": info.get("next_step_in"),
            "next_channel": info.get("next_channel"),
            "resend_channels": [
                (
                    channel,
                    _resend_label(channel, same=channel == info["channel"]),
                )
                for channel in _ordered(channels, info["channel"])
            ],
            "ended": ended,
            # A refusal of the whole page (a limit, a cooldown, a failed call).
            "alert": error or "",
            "restart_url": self.phone_url(_recall_next(self.request, challenge)),
            "code_url": reverse(self.code_url_name, args=[challenge.pk]),
        }
        return self.render(context, status=status, retry_after=retry_after)

    def get(self, request: HttpRequest, challenge_id: UUID) -> HttpResponse:
        """Show the code page; nothing is sent but a workflow step that is due (the poll)."""
        challenge = self.get_challenge(challenge_id)
        if challenge is None:
            return self.restart()
        return self.render_code(workflow.advance(challenge))

    def post(self, request: HttpRequest, challenge_id: UUID) -> HttpResponse:
        """Check the code, or send a new one."""
        challenge = self.get_challenge(challenge_id)
        if challenge is None:
            return self.restart()
        if "resend" in request.POST:
            return self.resend(challenge, request.POST["resend"])
        info = verification.challenge_info(challenge)
        if reason := self.ended_reason(challenge, info):
            return self.render_code(challenge, ended=ENDED[reason])
        form = CodeForm(request.POST, code_length=info["code_length"])
        if not form.is_valid():
            return self.render_code(challenge, form)
        return self.confirm(challenge, form)

    def confirm(self, challenge: Challenge, form: CodeForm) -> HttpResponse:
        """Check ``form``'s code; the flow says what success means."""
        raise NotImplementedError

    def refused(self, challenge: Challenge, form: CodeForm) -> HttpResponse:
        """The page after a wrong code: how many attempts are left, or why it ended."""
        challenge.refresh_from_db()
        info = verification.challenge_info(challenge)
        reason = self.ended_reason(challenge, info)
        if reason == "exhausted":
            return self.render_code(
                challenge,
                ended=gettext_lazy(
                    "Wrong code, and no attempts are left. You can ask for a new code."
                ),
            )
        if reason is not None:
            return self.render_code(challenge, ended=ENDED[reason])
        left = int(info.get("attempts_left") or 0)
        form.add_error(
            "code",
            ngettext(
                "Wrong code. You have %(count)d more attempt.",
                "Wrong code. You have %(count)d more attempts.",
                left,
            )
            % {"count": left},
        )
        return self.render_code(challenge, form)

    def succeeded(self, challenge: Challenge) -> HttpResponseRedirect:
        """Go where ``next`` said, checked again, or to ``LOGIN_REDIRECT_URL``."""
        target = _recall_next(self.request, challenge, forget=True)
        return HttpResponseRedirect(target or resolve_url(django_settings.LOGIN_REDIRECT_URL))

    def resend(self, challenge: Challenge, channel: str) -> HttpResponse:
        """Send a new code by ``channel``, once the cooldown allows it."""
        info = verification.challenge_info(challenge)
        if channel not in (info.get("channels") or ()):
            return self.render_code(challenge, error=WRONG_CHANNEL, status=400)
        try:
            renewed = verification.resend_challenge(challenge, self.request, channel=channel)
        except verification.ChallengeError as error:
            if error.code == "wrong_session":
                return self.restart()
            if error.code == "cooldown":
                return self.render_code(
                    challenge,
                    error=f"{error.message} {retry_phrase(error.retry_after)}",
                    status=429,
                    retry_after=error.retry_after,
                )
            if error.code == "channel_unavailable":
                # Offered a moment ago, so the provider refused or was not reached.
                _log_provider_failure(error, channel, challenge.number)
                return self.render_code(challenge, error=PROVIDER_FAILED, status=503)
            return self.render_code(challenge, ended=ENDED.get(error.code, error.message))
        except LimitExceeded as error:
            return self.render_code(
                challenge, error=error.message, status=429, retry_after=error.retry_after
            )
        except VoicePasswordError as error:
            _log_provider_failure(error, channel, challenge.number)
            return self.render_code(challenge, error=PROVIDER_FAILED, status=503)
        if renewed.pk != challenge.pk:
            _remember_next(self.request, renewed, _recall_next(self.request, challenge))
        return HttpResponseRedirect(reverse(self.code_url_name, args=[renewed.pk]))


def _ordered(channels: list[str], current: str) -> list[str]:
    """The current channel first (to send again), then the others in their order."""
    return sorted(channels, key=lambda channel: channel != current)


# The buttons of the resend form: the current channel again, or another instead.
_AGAIN: dict[str, StrOrPromise] = {
    Call.Channel.FLASH_CALL.value: gettext_lazy("Call me again"),
    Call.Channel.VOICE_CALL.value: gettext_lazy("Call me again"),
    Call.Channel.SMS.value: gettext_lazy("Send the SMS again"),
}
_INSTEAD: dict[str, StrOrPromise] = {
    Call.Channel.FLASH_CALL.value: gettext_lazy("Send the code in a missed call instead"),
    Call.Channel.VOICE_CALL.value: gettext_lazy("Call me and read out the code instead"),
    Call.Channel.SMS.value: gettext_lazy("Send the code by SMS instead"),
}


def _resend_label(channel: str, *, same: bool) -> StrOrPromise:
    return (_AGAIN if same else _INSTEAD).get(channel, channel)


class LoginPhoneView(PhoneView):
    """``voicepassword:login``: the number to log in with."""

    template_names: ClassVar[list[str]] = ["voicepassword/login.html", "voicepassword/phone.html"]


class LoginCodeView(CodeView):
    """``voicepassword:login_code``: the code, then the login."""

    template_names: ClassVar[list[str]] = [
        "voicepassword/login_code.html",
        "voicepassword/code.html",
    ]

    def confirm(self, challenge: Challenge, form: CodeForm) -> HttpResponse:
        """Authenticate through ``PhoneCodeBackend`` and log in (the session key cycles).

        The code is consumed only if the login is stored with it
        (:func:`~django_voicepassword.auth_backends.atomic_login`); a database
        that is locked or down answers 503, and the same code can be entered again.
        """
        code = form.cleaned_data["code"]
        try:
            with atomic_login(self.request, challenge):
                user = authenticate(self.request, challenge=challenge, otp_token=code)
                if user is not None:
                    # Read before login(): it flushes the session when another user was in it.
                    response = self.succeeded(challenge)
                    login(self.request, user, backend=BACKEND)
        except OperationalError as error:
            logger.warning(
                "Phone login for %s not completed, database unavailable: %s",
                mask(challenge.number),
                error,
            )
            return self.render_code(
                challenge, error=LOGIN_FAILED, status=503, retry_after=LOGIN_RETRY_AFTER
            )
        if user is None:
            return self.refused(challenge, form)
        return response


class _VerifyMixin(LoginRequiredMixin):
    purpose: ClassVar[str] = Challenge.Purpose.VERIFY
    phone_url_name: ClassVar[str] = "voicepassword:verify"
    code_url_name: ClassVar[str] = "voicepassword:verify_code"


class VerifyPhoneView(_VerifyMixin, PhoneView):
    """``voicepassword:verify``: a logged-in user's number to verify."""

    template_names: ClassVar[list[str]] = [
        "voicepassword/verify.html",
        "voicepassword/phone.html",
    ]

    def challenge_user(self) -> Any:
        """The logged-in user, who gets the number once the code is right."""
        return self.request.user


class VerifyCodeView(_VerifyMixin, CodeView):
    """``voicepassword:verify_code``: the code, then the number is the user's."""

    template_names: ClassVar[list[str]] = [
        "voicepassword/verify_code.html",
        "voicepassword/code.html",
    ]

    def get_challenge(self, challenge_id: UUID) -> Challenge | None:
        """The challenge, if this session started it for the logged-in user."""
        challenge = super().get_challenge(challenge_id)
        if challenge is None or challenge.user_id != self.request.user.pk:
            return None
        return challenge

    def confirm(self, challenge: Challenge, form: CodeForm) -> HttpResponse:
        """Check the code; a right one makes the number the user's (``phone_verified``)."""
        try:
            ok = verification.confirm_challenge(challenge, form.cleaned_data["code"], self.request)
        except verification.ChallengeError as error:
            if error.code == "wrong_session":
                return self.restart()
            return self.render_code(challenge, ended=ENDED.get(error.code, error.message))
        if not ok:
            return self.refused(challenge, form)
        messages.success(
            self.request,
            gettext("Your phone number %(number)s is verified.")
            % {"number": mask(challenge.number)},
            fail_silently=True,
        )
        return self.succeeded(challenge)


urlpatterns: list[URLPattern] = [
    path("login/", LoginPhoneView.as_view(), name="login"),
    path("login/<uuid:challenge_id>/", LoginCodeView.as_view(), name="login_code"),
    path("verify/", VerifyPhoneView.as_view(), name="verify"),
    path("verify/<uuid:challenge_id>/", VerifyCodeView.as_view(), name="verify_code"),
]
