"""The django-otp device that sends its codes by a VoicePassword flash call or voice call.

:class:`VoicePasswordDevice` is a django-otp side-channel device: the site's
django-otp forms (``OTPAdminSite``, ``OTPTokenForm``, django-two-factor-auth)
ask it for a challenge, it calls the user's phone, and the person types the
last 4 digits of the calling number (a flash call) or the code a robot reads
(a voice call).

What it takes from each side:

- **django-otp**: the token's validity window (``valid_until``), exponential
  back-off after wrong codes (``ThrottlingMixin``), a cooldown between calls
  (``CooldownMixin``), created and last-used times (``TimestampMixin``), and
  the admin.
- **django-voicepassword**: every call goes through
  :func:`django_voicepassword.calls.place`, so it is a
  :class:`~django_voicepassword.models.Call` row (call history, admin,
  reconciliation, signals); it is counted by the abuse limits
  (:func:`~django_voicepassword.ratelimit.check_send`) and reserved against
  ``DAILY_BUDGET`` first; a code can be entered at most ``MAX_ATTEMPTS``
  times; the code is kept only as an HMAC.

What the row stores
-------------------
django-otp's ``SideChannelDevice`` keeps the code in ``token`` in clear, by
design. This device keeps ``"<nonce>$<HMAC-SHA256>"`` there instead: the HMAC
of the device id, a random nonce and the code, under ``VOICEPASSWORD['CODE_KEY']``
(or a key derived from ``SECRET_KEY`` for this use alone), the way the
package's own challenges keep theirs. A 4-digit code has 10^4 values, so a
bare hash would be reversed at once; without the key the HMAC cannot be. The
nonce makes every code's digest unique even when a code repeats. The row also
holds the number to call (``number``, or empty to read the user's own), the
channel, ``valid_until``, the attempts at the current code, and django-otp's
throttling, cooldown and timestamp fields; never a code in clear.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Final

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django_otp.models import (
    CooldownMixin,
    SideChannelDevice,
    ThrottlingMixin,
    TimestampMixin,
)

from django_voicepassword import calls, ratelimit
from django_voicepassword.conf import settings as vp_settings
from django_voicepassword.contrib.otp import conf
from django_voicepassword.exceptions import APIError, OutcomeUnknownError, TransportError
from django_voicepassword.models import Call, PhoneNumber
from django_voicepassword.phone import InvalidPhoneNumber, mask, normalize
from django_voicepassword.verification import CODE_LENGTH, clean_code

if TYPE_CHECKING:
    from django.http import HttpRequest

__all__ = ["VoicePasswordDevice", "token_digest"]

logger = logging.getLogger(__name__)

# The salt of the key derived from SECRET_KEY: its own, so that a digest made
# for a device is never valid for a challenge, nor the other way round.
_TOKEN_SALT: Final = "django_voicepassword.contrib.otp.token"  # noqa: S105  (a salt)

# The fields generate_challenge and verify_token write: named, so that a save
# never writes back a stale copy of the others (the number an admin just
# changed, a token another request just consumed).
_THROTTLE_FIELDS: Final = ["throttling_failure_timestamp", "throttling_failure_count"]


def token_digest(device_pk: object, nonce: str, code: str) -> str:
    """HMAC-SHA256 of ``"otp:<device pk>:<nonce>:<code>"`` under the codes' own key.

    ``CODE_KEY`` when the site sets one, else a key derived from
    ``SECRET_KEY`` with a salt of this use alone. The ``otp:`` prefix keeps
    the messages apart from the package's challenges (whose messages start
    with a UUID) when both use ``CODE_KEY``.
    """
    message = f"otp:{device_pk}:{nonce}:{code}"
    key = vp_settings.CODE_KEY
    if key:
        return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()
    return salted_hmac(_TOKEN_SALT, message, algorithm="sha256").hexdigest()


def _new_code() -> str:
    return f"{secrets.randbelow(10**CODE_LENGTH):0{CODE_LENGTH}d}"


class VoicePasswordDevice(
    TimestampMixin,  # type: ignore[misc]  # django-otp is untyped
    CooldownMixin,  # type: ignore[misc]
    ThrottlingMixin,  # type: ignore[misc]
    SideChannelDevice,  # type: ignore[misc]
):
    """A django-otp device that calls the user's phone with a 4-digit code.

    ``number`` is the number to call, normalized (``phone.normalize``); left
    empty, the device calls the user's own number at each challenge (see
    :meth:`get_number`). ``channel`` is a flash call (the code is the last 4
    digits of the calling number) or a voice call (a robot reads it).
    """

    class Channel(models.TextChoices):
        """How the code reaches the phone."""

        FLASH_CALL = "flash_call", _("Flash call")
        VOICE_CALL = "voice_call", _("Voice call")

    number = models.CharField(
        _("phone number"),
        max_length=16,
        blank=True,
        help_text=_("The number to call. Empty: the number the user verified on the site."),
    )
    channel = models.CharField(
        _("channel"), max_length=16, choices=Channel.choices, default=Channel.FLASH_CALL
    )
    # Overrides SideChannelDevice.token (16 characters of code in clear): the
    # nonce and the HMAC of the code last sent, never the code.
    # null=True as django-otp's own field: None is "no code pending" there.
    token = models.CharField(  # noqa: DJ001
        max_length=96,
        blank=True,
        null=True,
        editable=False,
        help_text="A nonce and the HMAC of the code last sent; never the code itself.",
    )
    token_attempts = models.PositiveSmallIntegerField(
        default=0,
        editable=False,
        help_text="Codes entered since the last call (at most VOICEPASSWORD['MAX_ATTEMPTS']).",
    )

    # django-otp's fields, as this module reads them (django-otp has no types).
    last_generated_timestamp: datetime | None
    valid_until: datetime

    #: The message of the last :meth:`generate_challenge` on this instance
    #: (django-two-factor-auth's login page shows it; see ``twofactor.py``).
    challenge_message: str | None = None

    failure_messages: ClassVar[dict[str, Any]] = {
        "no_number": _("There is no phone number to call for this device."),
        "not_placed": _("The call could not be placed. Try again later."),
    }

    class Meta:
        verbose_name = _("VoicePassword device")
        verbose_name_plural = _("VoicePassword devices")

    def __repr__(self) -> str:
        # Masked: a repr ends up in logs and tracebacks.
        return f"<VoicePasswordDevice {self.pk} {mask(self.number) if self.number else '-'}>"

    # --- the number ---------------------------------------------------------------

    def clean(self) -> None:
        """Normalize ``number`` (``ValidationError`` with the reason when it is no number)."""
        super().clean()
        if self.number:
            try:
                self.number = normalize(self.number)
            except InvalidPhoneNumber as error:
                raise ValidationError({"number": error.message}, code=error.code) from None

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save, with ``number`` normalized (one form everywhere, as the package stores numbers).

        Raises :class:`~django_voicepassword.phone.InvalidPhoneNumber` for a
        number that is no number.
        """
        if self.number:
            self.number = normalize(self.number, enforce_policy=False)
        super().save(*args, **kwargs)

    def get_number(self) -> str | None:
        """The number to call now: ``number``, else the user's own; ``None`` when none.

        The user's own is their field ``VOICEPASSWORD['USER_PHONE_FIELD']``
        when the site sets it (a site that keeps phones on its user model),
        else the number they verified most recently through the package
        (:class:`~django_voicepassword.models.PhoneNumber`). It is read at each
        challenge, so a changed number is followed.
        """
        if self.number:
            return str(self.number)
        field = vp_settings.USER_PHONE_FIELD
        if field:
            value = getattr(self.user, field, None)
            return str(value) if value else None
        found = (
            PhoneNumber.objects.filter(user_id=self.user_id)
            .order_by("-verified_at", "-pk")
            .values_list("number", flat=True)
            .first()
        )
        return found or None

    # --- django-otp's hooks ---------------------------------------------------------

    def get_cooldown_duration(self) -> int:
        """``OTP_VOICEPASSWORD_COOLDOWN_DURATION``: seconds between two calls."""
        return conf.get("OTP_VOICEPASSWORD_COOLDOWN_DURATION")

    def get_throttle_factor(self) -> int:
        """``OTP_VOICEPASSWORD_THROTTLE_FACTOR``: django-otp's back-off after wrong codes."""
        return conf.get("OTP_VOICEPASSWORD_THROTTLE_FACTOR")

    def generate_challenge(self, request: HttpRequest | None = None) -> str:
        """Call the phone with a fresh code; return what to tell the person.

        django-otp shows the message as "OTP Challenge: …"; it says which
        number is called (masked) and what to enter, or why no call was
        placed: the cooldown has not passed, a limit or the daily budget
        refused (:class:`~django_voicepassword.ratelimit.LimitExceeded`'s
        message), there is no usable number, or the provider refused or could
        not be reached. Those are answers, never exceptions, so that every
        form shows them; only a broken configuration raises
        (:class:`~django_voicepassword.conf.ConfigurationError`).

        ``request`` (optional: django-otp passes none) adds the limits of the
        client's address and session to those of the number and the site.
        The code is stored only as an HMAC (see the module); a new call
        replaces the code before it, with a fresh set of attempts.
        """
        self.challenge_message = message = self._generate(request)
        return message

    def _generate(self, request: HttpRequest | None) -> str:
        number = self.get_number()
        if not number:
            return str(self.failure_messages["no_number"])
        try:
            number = normalize(number)
        except InvalidPhoneNumber as error:
            return str(error)
        if self.pk is None:
            # django-two-factor-auth's set-up asks an unsaved device for a
            # challenge (as django-otp's email device, it is saved here).
            self.save()
        claimed = self._claim_cooldown()
        if claimed is None:
            return self._cooldown_message()
        channel = str(self.channel)
        try:
            ratelimit.check_send(number, request, kind="verified" if self.confirmed else "new")
            reservation = ratelimit.reserve(channel, request=request)
        except ratelimit.LimitExceeded as refused:
            self._give_back_cooldown(claimed)
            return str(refused)
        except BaseException:
            self._give_back_cooldown(claimed)
            raise
        client_code: str | None = None
        if channel == Call.Channel.VOICE_CALL or vp_settings.FLASH_CODE_SOURCE == "client":
            client_code = _new_code()
        try:
            _call, result = calls.place(
                channel,
                number,
                code=client_code,
                capacity=None if client_code else CODE_LENGTH,
                user=self.user,
            )
            code = client_code or result.code
        except OutcomeUnknownError:
            # The provider may have placed (and billed) it: the reservation
            # and the cooldown stay. A code of ours may well be on the phone;
            # the provider's is lost with the answer.
            logger.warning("OTP %s to %s: outcome unknown", channel, mask(number))
            code = client_code
        except (APIError, TransportError) as error:
            ratelimit.release(reservation)
            self._give_back_cooldown(claimed)
            logger.warning(
                "OTP %s to %s not placed: %s",
                channel,
                mask(number),
                getattr(error, "error_code", "") or type(error).__name__,
            )
            return str(self.failure_messages["not_placed"])
        except BaseException:
            ratelimit.release(reservation)
            self._give_back_cooldown(claimed)
            raise
        if not code:
            logger.error("OTP %s to %s: no code to check", channel, mask(number))
            return str(self.failure_messages["not_placed"])
        self._store(code)
        if channel == Call.Channel.VOICE_CALL:
            return gettext("Calling %(number)s: enter the %(digits)d-digit code you hear.") % {
                "number": mask(number),
                "digits": CODE_LENGTH,
            }
        return gettext(
            "Calling %(number)s: enter the last %(digits)d digits of the calling number."
        ) % {"number": mask(number), "digits": CODE_LENGTH}

    def _claim_cooldown(self) -> Any:
        """Start the cooldown with one conditional UPDATE; ``None`` if it has not passed.

        Of concurrent challenges (two tabs, a double click: django-two-factor-
        auth's login page does not lock the device) exactly one places a call.
        Returns what to give back (:meth:`_give_back_cooldown`) if no call is
        placed after all.
        """
        now = timezone.now()
        previous = self.last_generated_timestamp
        rows = type(self).objects.filter(pk=self.pk)
        duration = self.get_cooldown_duration()
        if duration > 0:
            rows = rows.filter(
                Q(last_generated_timestamp__isnull=True)
                | Q(last_generated_timestamp__lt=now - timedelta(seconds=duration))
            )
        if not rows.update(last_generated_timestamp=now):
            self.refresh_from_db(fields=["last_generated_timestamp"])
            return None
        self.last_generated_timestamp = now
        return (now, previous)

    def _give_back_cooldown(self, claimed: Any) -> None:
        """Nothing was placed: give the cooldown back (unless another claim came since)."""
        now, previous = claimed
        type(self).objects.filter(pk=self.pk, last_generated_timestamp=now).update(
            last_generated_timestamp=previous
        )
        self.last_generated_timestamp = previous

    def _cooldown_message(self) -> str:
        duration = self.get_cooldown_duration()
        last = self.last_generated_timestamp or timezone.now()
        wait = math.ceil((last + timedelta(seconds=duration) - timezone.now()).total_seconds())
        return "{} {}".format(
            gettext("A code was sent a moment ago."), ratelimit.retry_phrase(max(wait, 1))
        )

    def _store(self, code: str) -> None:
        """Keep the code as an HMAC, with a fresh validity window and set of attempts."""
        nonce = secrets.token_hex(8)
        self.token = f"{nonce}${token_digest(self.pk, nonce, code)}"
        self.valid_until = timezone.now() + timedelta(
            seconds=max(1, conf.get("OTP_VOICEPASSWORD_TOKEN_VALIDITY"))
        )
        self.token_attempts = 0
        self.save(update_fields=["token", "valid_until", "token_attempts"])

    def verify_token(self, token: object) -> bool:
        """Check ``token``; ``True`` once, for the code last sent, in time.

        django-otp's semantics: refused (``False``, nothing counted) while
        the back-off after wrong codes runs (:meth:`verify_is_allowed`); a
        wrong code adds to the back-off; the right one resets it, records
        the use and ends the code (``token`` cleared, ``valid_until`` now).
        On top: a code can be entered ``VOICEPASSWORD['MAX_ATTEMPTS']`` times,
        after which it is forgotten and a new call is needed. Attempts and
        the consumption are conditional UPDATEs, so parallel requests get no
        extra tries and of concurrent right entries exactly one wins, whether
        or not the caller locked the row. Input that is no code (letters, the
        wrong length) is a wrong code, never an error.
        """
        allowed, _info = self.verify_is_allowed()
        if not allowed:
            return False
        if self._consume(token):
            self.throttle_reset(commit=False)
            self.set_last_used_timestamp(commit=False)
            self.cooldown_reset(commit=False)
            self.save(
                update_fields=[*_THROTTLE_FIELDS, "last_used_at", "last_generated_timestamp"]
            )
            return True
        self.throttle_increment(commit=False)
        self.save(update_fields=_THROTTLE_FIELDS)
        return False

    def _consume(self, token: object) -> bool:
        if self.pk is None:
            return False
        now = timezone.now()
        stored = (
            type(self)
            .objects.filter(pk=self.pk, valid_until__gt=now)
            .values_list("token", flat=True)
            .first()
        )
        if not stored:
            return False
        current = type(self).objects.filter(pk=self.pk, token=stored, valid_until__gt=now)
        # One conditional UPDATE counts the attempt (see verification.py):
        # concurrent entries each count one, none gets past MAX_ATTEMPTS.
        counted = current.filter(token_attempts__lt=vp_settings.MAX_ATTEMPTS).update(
            token_attempts=F("token_attempts") + 1
        )
        if not counted:
            self._forget_spent(stored)
            return False
        if isinstance(token, int) and not isinstance(token, bool):
            token = str(token)  # a form's IntegerField; leading zeros are lost, so no match
        cleaned = clean_code(token, CODE_LENGTH)
        nonce, _sep, digest = stored.partition("$")
        # compare_digest: the time taken must not tell how many leading
        # characters of a guessed digest were right.
        if cleaned is None or not hmac.compare_digest(
            token_digest(self.pk, nonce, cleaned), digest
        ):
            self._forget_spent(stored)
            return False
        if not current.update(token=None, valid_until=now):
            return False  # a concurrent right entry consumed it first
        self.token, self.valid_until = None, now
        return True

    def _forget_spent(self, stored: str) -> None:
        """Clear a code whose attempts are used up (the admin then shows none pending)."""
        type(self).objects.filter(
            pk=self.pk, token=stored, token_attempts__gte=vp_settings.MAX_ATTEMPTS
        ).update(token=None)
        self.refresh_from_db(fields=["token", "token_attempts", "valid_until"])
