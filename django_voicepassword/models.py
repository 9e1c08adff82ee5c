"""What the app records: every call placed, every callback received, the balance.

A :class:`Call` row is written before the provider is asked, so a crash in the
middle of a request leaves a trace; its status then only moves forward (see
:attr:`Call.Status` and :func:`status_rank`), whoever reports the change: a
callback, ``state`` or the ``daily`` reconciliation.
"""

from __future__ import annotations

import uuid
from typing import ClassVar

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from django_voicepassword.client import CallState
from django_voicepassword.phone import mask

__all__ = [
    "FINAL_STATUSES",
    "BalanceSnapshot",
    "Call",
    "CallbackEvent",
    "Challenge",
    "PhoneNumber",
    "PrefixBlock",
    "status_for_state",
    "status_rank",
]


class Call(models.Model):
    """One request to ``send/``: a flash call, a voice call or an SMS fallback."""

    class Channel(models.TextChoices):
        """How the code reaches the subscriber."""

        FLASH_CALL = "flash_call", _("flash call")
        VOICE_CALL = "voice_call", _("voice call")
        SMS = "sms", _("SMS")

    class Status(models.TextChoices):
        """Where the call is; the order of the lifecycle is :func:`status_rank`."""

        PENDING = "pending", _("pending")
        UNKNOWN = "unknown", _("outcome unknown")
        NOT_PLACED = "not_placed", _("not placed")
        PLACED = "placed", _("placed")
        DIALLING = "dialling", _("dialling")
        QUEUED = "queued", _("queued")
        SENT = "sent", _("sent")
        ANSWERED = "answered", _("answered")
        BUSY = "busy", _("busy")
        NO_ANSWER = "no_answer", _("no answer")
        FAILED = "failed", _("failed")
        CANCELLED = "cancelled", _("cancelled")
        DELIVERED = "delivered", _("delivered")
        NOT_DELIVERED = "not_delivered", _("not delivered")
        #: A code "sent" to one of ``REVIEW_NUMBERS``: recorded, never placed.
        REVIEW = "review", _("review number, not placed")

    provider_id = models.CharField(
        _("provider id"),
        max_length=32,
        unique=True,
        null=True,
        blank=True,
        help_text=_("The request id the provider gave; empty until it answered."),
    )
    channel = models.CharField(_("channel"), max_length=16, choices=Channel.choices)
    number = models.CharField(
        _("number"), max_length=16, help_text=_("The subscriber, in the provider's form.")
    )
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.PENDING
    )
    state_label = models.CharField(
        _("provider state"),
        max_length=64,
        blank=True,
        help_text=_("The provider's own word for the state, verbatim."),
    )
    error_code = models.CharField(
        _("error code"),
        max_length=64,
        blank=True,
        help_text=_("The provider's error_code, or why the call was not placed."),
    )
    price = models.DecimalField(_("price"), max_digits=12, decimal_places=4, null=True, blank=True)
    duration = models.DurationField(_("duration"), null=True, blank=True)
    provider_date = models.DateTimeField(_("provider date"), null=True, blank=True)
    parent = models.ForeignKey(
        "self",
        verbose_name=_("parent call"),
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="fallbacks",
        help_text=_("For an SMS fallback: the call whose code it sends."),
        # Indexed where set only (Meta.indexes): the rows without a parent, all
        # but the fallbacks, add no entry to it on every status update.
        db_index=False,
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    challenge = models.ForeignKey(
        "Challenge",
        verbose_name=_("challenge"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="calls",
        help_text=_("The phone verification or login this call sent a code for."),
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    callbacks_dropped = models.PositiveIntegerField(
        _("callbacks dropped"),
        default=0,
        editable=False,
        help_text=_(
            "Callbacks to this call's URL answered but not kept: it already had "
            "CALLBACK_MAX_EVENTS events. More than a few means the URL leaked."
        ),
    )

    class Meta:
        verbose_name = _("call")
        verbose_name_plural = _("calls")
        ordering: ClassVar = ["-created_at", "-id"]
        indexes: ClassVar = [
            models.Index(fields=["-created_at", "-id"], name="voicepassword_call_created"),
            models.Index(fields=["status", "-created_at"], name="voicepassword_call_status"),
            models.Index(fields=["number", "-created_at"], name="voicepassword_call_number"),
            models.Index(fields=["channel", "-created_at"], name="voicepassword_call_channel"),
            # A call's fallbacks (the cascade, retention, the admin's inline):
            # every query on parent asks for a value, never for NULL.
            models.Index(
                fields=["parent"],
                condition=models.Q(parent__isnull=False),
                name="voicepassword_call_parent",
            ),
        ]
        constraints: ClassVar = [
            # One SMS fallback per call: it costs money. A fallback that was not
            # placed does not count, so it can be tried again.
            models.UniqueConstraint(
                fields=["parent"],
                condition=models.Q(channel="sms") & ~models.Q(status="not_placed"),
                name="voicepassword_one_sms_per_call",
            )
        ]
        permissions: ClassVar = [
            ("view_full_number", _("Can see full phone numbers")),
        ]

    def __str__(self) -> str:
        # The admin renders this for every row's checkbox: the enums are
        # cheaper than get_FOO_display(), which looks the field up each time.
        channel = Call.Channel(self.channel).label if self.channel else ""
        status = Call.Status(self.status).label if self.status else ""
        return f"{channel} {mask(self.number)} ({status})"

    @property
    def is_final(self) -> bool:
        """Whether the status can no longer change but through reconciliation."""
        return self.status in FINAL_STATUSES


#: Statuses after which nothing but the provider's own records may change a call.
FINAL_STATUSES = frozenset(
    {
        Call.Status.NOT_PLACED,
        Call.Status.ANSWERED,
        Call.Status.BUSY,
        Call.Status.NO_ANSWER,
        Call.Status.FAILED,
        Call.Status.CANCELLED,
        Call.Status.DELIVERED,
        Call.Status.NOT_DELIVERED,
        Call.Status.REVIEW,
    }
)

_RANKS = {
    Call.Status.PENDING: 0,
    Call.Status.UNKNOWN: 0,
    Call.Status.PLACED: 1,
    Call.Status.DIALLING: 2,
    Call.Status.QUEUED: 2,
    Call.Status.SENT: 3,
}

_FROM_STATE = {
    CallState.ANSWERED: Call.Status.ANSWERED,
    CallState.BUSY: Call.Status.BUSY,
    CallState.NO_ANSWER: Call.Status.NO_ANSWER,
    CallState.FAIL: Call.Status.FAILED,
    CallState.CANCEL: Call.Status.CANCELLED,
    CallState.DIALLING: Call.Status.DIALLING,
    CallState.QUEUED: Call.Status.QUEUED,
    CallState.SEND: Call.Status.SENT,
    CallState.DELIVERED: Call.Status.DELIVERED,
    CallState.NOT_DELIVERED: Call.Status.NOT_DELIVERED,
}


def status_rank(status: str) -> int:
    """How far along the lifecycle ``status`` is: a call never moves to a lower rank.

    Pending and unknown are 0, placed 1, dialling and queued 2, sent 3, every
    final status 9. Two statuses of equal rank do not replace each other.
    """
    return _RANKS.get(Call.Status(status), 9)


def status_for_state(state: CallState | None) -> Call.Status | None:
    """The :class:`Call.Status` a provider state means (``None`` for an unknown label)."""
    return None if state is None else _FROM_STATE[state]


class CallbackEvent(models.Model):
    """A status callback as received, and what became of it.

    Written for every callback whose URL token was valid and whose body was
    well formed; a forged or malformed request writes nothing. The unique
    constraint makes "applied" happen at most once per request id and state,
    whatever the concurrency.
    """

    class Outcome(models.TextChoices):
        """What the callback did to its call."""

        APPLIED = "applied", _("applied")
        DUPLICATE = "duplicate", _("duplicate")
        STALE = "stale", _("stale")
        ORPHAN = "orphan", _("orphan")
        #: Never stored: the answer to a callback over ``CALLBACK_MAX_EVENTS``
        #: (or to the URL of a call that is gone), which is not kept.
        DROPPED = "dropped", _("dropped")

    call = models.ForeignKey(
        Call,
        verbose_name=_("call"),
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="callback_events",
    )
    url_call = models.ForeignKey(
        Call,
        verbose_name=_("received at the URL of"),
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        editable=False,
        help_text=_(
            "The call whose callback URL received this event (for an orphan, the "
            "only link to a call): what CALLBACK_MAX_EVENTS counts."
        ),
    )
    provider_id = models.CharField(_("provider id"), max_length=32)
    state = models.CharField(_("state"), max_length=64)
    payload = models.JSONField(_("payload"))
    remote_addr = models.GenericIPAddressField(_("remote address"), null=True, blank=True)
    received_at = models.DateTimeField(_("received"), default=timezone.now, editable=False)
    outcome = models.CharField(_("outcome"), max_length=16, choices=Outcome.choices)

    class Meta:
        verbose_name = _("callback event")
        verbose_name_plural = _("callback events")
        ordering: ClassVar = ["-received_at", "-id"]
        indexes: ClassVar = [
            models.Index(fields=["-received_at"], name="voicepassword_cb_received"),
            models.Index(fields=["provider_id"], name="voicepassword_cb_provider"),
            models.Index(fields=["outcome", "-received_at"], name="voicepassword_cb_outcome"),
        ]
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["provider_id", "state"],
                condition=models.Q(outcome="applied"),
                name="voicepassword_callback_applied_once",
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider_id} {self.state} ({self.get_outcome_display()})"


class BalanceSnapshot(models.Model):
    """The account balance at one moment."""

    balance = models.DecimalField(_("balance"), max_digits=14, decimal_places=2)
    currency = models.CharField(_("currency"), max_length=8)
    taken_at = models.DateTimeField(_("taken"), default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("balance snapshot")
        verbose_name_plural = _("balance snapshots")
        ordering: ClassVar = ["-taken_at", "-id"]
        get_latest_by = "taken_at"
        indexes: ClassVar = [
            models.Index(fields=["-taken_at"], name="voicepassword_balance_taken"),
        ]

    def __str__(self) -> str:
        return f"{self.balance} {self.currency}"


class Challenge(models.Model):
    """One phone verification or login attempt: a number, a code, and its limits.

    The code itself is never stored: only its HMAC-SHA256 under a key of its
    own (a bare hash of a 4-digit code falls to 10^4 guesses). The primary key
    is random, so a challenge cannot be guessed from another; the challenge is
    bound to the browser session that started it.
    """

    class Purpose(models.TextChoices):
        """What a confirmed code is for."""

        LOGIN = "login", _("login")
        VERIFY = "verify", _("phone verification")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    number = models.CharField(_("number"), max_length=16)
    purpose = models.CharField(
        _("purpose"), max_length=16, choices=Purpose.choices, default=Purpose.LOGIN
    )
    channel = models.CharField(
        _("channel"),
        max_length=16,
        choices=Call.Channel.choices,
        help_text=_("How the current code was sent."),
    )
    code_digest = models.CharField(_("code digest"), max_length=64, blank=True, editable=False)
    code_length = models.PositiveSmallIntegerField(_("code length"), default=4)
    attempts = models.PositiveSmallIntegerField(
        _("attempts"), default=0, help_text=_("Codes entered for the current code.")
    )
    max_attempts = models.PositiveSmallIntegerField(_("attempts allowed"), default=3)
    sends = models.PositiveSmallIntegerField(
        _("codes sent"), default=0, help_text=_("How many codes were sent; the cooldown grows.")
    )
    expires_at = models.DateTimeField(_("expires"))
    resend_at = models.DateTimeField(_("next send allowed"))
    verified_at = models.DateTimeField(_("verified"), null=True, blank=True)
    step = models.PositiveSmallIntegerField(
        _("workflow step"),
        default=0,
        help_text=_("The step of the workflow whose code was sent last (0: the first)."),
    )
    next_step_at = models.DateTimeField(
        _("next step"),
        null=True,
        blank=True,
        help_text=_("When the workflow sends the next code by itself; empty: it will not."),
    )
    session_digest = models.CharField(
        _("session digest"), max_length=64, blank=True, editable=False
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("challenge")
        verbose_name_plural = _("challenges")
        ordering: ClassVar = ["-created_at"]
        indexes: ClassVar = [
            models.Index(fields=["number", "-created_at"], name="voicepassword_chal_number"),
            models.Index(fields=["-created_at"], name="voicepassword_chal_created"),
        ]

    def __str__(self) -> str:
        return f"{self.get_purpose_display()} {mask(self.number)}"


class PhoneNumber(models.Model):
    """A phone number a user has verified; one number belongs to one user."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        on_delete=models.CASCADE,
        related_name="voicepassword_numbers",
    )
    number = models.CharField(
        _("number"), max_length=16, unique=True, help_text=_("In the provider's form.")
    )
    verified_at = models.DateTimeField(_("verified"), default=timezone.now)

    class Meta:
        verbose_name = _("phone number")
        verbose_name_plural = _("phone numbers")
        ordering: ClassVar = ["-verified_at"]

    def __str__(self) -> str:
        return mask(self.number)


class PrefixBlock(models.Model):
    """A fraud-guard decision: a prefix or a country blocked, with its evidence, or allow-listed.

    Written by :mod:`django_voicepassword.fraud` when the confirmation rate
    of a prefix (``prefix`` set) or of a country (``prefix`` empty) fell far
    below the rest of the site's: ``started`` and ``confirmed`` are its
    counts in the window then, ``baseline`` the rate it was compared with.
    Staff lift a block (``lifted_at``, ``lifted_by``) or allow-list the prefix
    or country (``allow_listed``: never blocked again while the row exists).
    The decision in force is also kept in the cache, where every send reads it.
    """

    prefix = models.CharField(
        _("prefix"),
        max_length=16,
        blank=True,
        help_text=_("The first digits of the numbers (PREFIX_LENGTH); empty for a whole country."),
    )
    country = models.CharField(
        _("country"), max_length=8, blank=True, help_text=_("The region code, such as RU.")
    )
    started = models.PositiveIntegerField(
        _("codes sent"), default=0, help_text=_("Codes sent to new numbers here in the window.")
    )
    confirmed = models.PositiveIntegerField(
        _("confirmed"), default=0, help_text=_("Of them, the codes that were entered.")
    )
    baseline = models.FloatField(
        _("baseline"),
        null=True,
        blank=True,
        help_text=_("The confirmation rate of the rest of the site, as compared."),
    )
    window = models.PositiveIntegerField(_("window (seconds)"), default=0)
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    blocked_until = models.DateTimeField(_("blocked until"), null=True, blank=True)
    lifted_at = models.DateTimeField(_("lifted"), null=True, blank=True)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("lifted by"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    allow_listed = models.BooleanField(
        _("allow-listed"),
        default=False,
        help_text=_("Never blocked by the fraud guard while this row exists."),
    )

    class Meta:
        verbose_name = _("blocked prefix")
        verbose_name_plural = _("blocked prefixes")
        ordering: ClassVar = ["-created_at", "-id"]
        indexes: ClassVar = [
            models.Index(fields=["prefix", "country"], name="voicepassword_block_prefix"),
        ]

    def __str__(self) -> str:
        return f"{self.prefix} ({self.country})" if self.prefix else self.country

    @property
    def in_force(self) -> bool:
        """Whether the block still refuses sends: not lifted, not allow-listed, not over."""
        return (
            not self.allow_listed
            and self.lifted_at is None
            and self.blocked_until is not None
            and self.blocked_until > timezone.now()
        )
