"""Serializers of the login API: what clients send, and (for the schema) what they get.

Input is untrusted and strict about types: a phone number or a code must be a
JSON string (an integer would lose a leading ``+`` or ``0`` and a float its
digits), and a choice must be one of its values. Anything else is a 400 that
names the field. What a number or a code *means* is decided by the services
(:func:`~django_voicepassword.phone.normalize` inside ``start_challenge``, the
HMAC comparison inside ``confirm_challenge``), never here, so the API, the
HTML flow and a site's own code read them the same way.

The output serializers are not used to render anything: the views answer with
``challenge_info()`` as it is. They describe the answers for the OpenAPI
schema (``api/schema.py``) and document the shape in one place.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from rest_framework import serializers

from django_voicepassword.models import Call, Challenge

__all__ = [
    "ChallengeConfirmSerializer",
    "ChallengeResendSerializer",
    "ChallengeSerializer",
    "ChallengeStartSerializer",
    "ConfirmedSerializer",
    "ConfirmedUserSerializer",
    "ErrorSerializer",
    "WrongCodeSerializer",
]


class StrictCharField(serializers.CharField):
    """A ``CharField`` that takes JSON strings only (DRF's also takes numbers).

    Refuses with ``CharField``'s own ``invalid`` message, "Not a valid string.",
    translated by DRF.
    """

    def to_internal_value(self, data: Any) -> str:
        """Refuse anything but a string, then apply ``CharField``'s rules."""
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class ChallengeStartSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """``POST challenges/``: the number to call, how, and what for."""

    number = StrictCharField(
        # Blank and whitespace go to normalize(), whose "Enter a phone number."
        # is the message every interface gives for them.
        allow_blank=True,
        trim_whitespace=False,
        help_text="The phone number as typed: +7 999 000-00-01, 8 999 000 00 01, ...",
    )
    channel = serializers.ChoiceField(
        choices=Call.Channel.choices,
        default=Call.Channel.FLASH_CALL.value,
        help_text="How to send the code; the default is a flash call.",
    )
    purpose = serializers.ChoiceField(
        choices=Challenge.Purpose.choices,
        default=Challenge.Purpose.LOGIN.value,
        help_text="login: log in by this number; verify: add it to the logged-in user's numbers.",
    )


class ChallengeConfirmSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """``POST challenges/<id>/confirm/``: the code the phone received."""

    code = StrictCharField(
        # Long enough for any code and some stray spaces; a bound, so that no
        # request hands the services a body-sized string.
        max_length=32,
        help_text="The code: the last digits of the calling number, or what was spoken.",
    )


class ChallengeResendSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """``POST challenges/<id>/resend/``: a new code, on the same or another channel."""

    channel = serializers.ChoiceField(
        choices=Call.Channel.choices,
        required=False,
        help_text="Switch to this channel; left out: the challenge's current one.",
    )


class ChallengeSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """A challenge as clients see it: what a phone needs to read a flash call itself."""

    id = serializers.UUIDField(help_text="The challenge, for the URLs that follow.")
    masked_number = serializers.CharField(help_text="The number called, mostly hidden.")
    channel = serializers.ChoiceField(choices=Call.Channel.choices)
    purpose = serializers.ChoiceField(choices=Challenge.Purpose.choices)
    code_length = serializers.IntegerField(help_text="Digits in the code.")
    caller_prefix = serializers.CharField(
        allow_null=True,
        help_text=(
            "For a flash call: the calling number without its last code_length digits, "
            "when known; an app reading the call log matches it."
        ),
    )
    expires_in = serializers.IntegerField(help_text="Seconds the code can be entered.")
    resend_in = serializers.IntegerField(help_text="Seconds until a new code can be sent.")
    attempts_left = serializers.IntegerField(help_text="Codes that may still be entered.")
    channels = serializers.ListField(
        # Plain strings: a second enum of the same values would make the
        # schema generator ask the site for ENUM_NAME_OVERRIDES.
        child=serializers.CharField(),
        help_text="Channels a resend may switch to now (values as for channel).",
    )
    next_step_in = serializers.IntegerField(
        allow_null=True,
        help_text=(
            "With a workflow: seconds until the server sends the next code by itself "
            "(poll this challenge then); null when no step follows."
        ),
    )
    next_channel = serializers.CharField(
        # A plain string, as channels: see there.
        allow_null=True,
        help_text="The channel of that next step (values as for channel); null when none.",
    )


_USER = get_user_model()
_USER_PK = _USER._meta.pk.name if _USER._meta.pk is not None else "id"


class ConfirmedUserSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    """The user in a confirmation's answer: ``id``, the primary key, typed as the model's."""

    if _USER_PK != "id":
        # A custom user model's key of another name is still answered as "id".
        id = serializers.ReadOnlyField(source=_USER_PK)

    class Meta:
        model = _USER
        fields = ("id",)


class ConfirmedSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """The answer to a right code (``ChallengeConfirmView.get_response_data``)."""

    verified = serializers.BooleanField()
    user = ConfirmedUserSerializer()


class ErrorSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """An error that is not about one field: a message and a stable code."""

    detail = serializers.CharField(help_text="A sentence for the person, translated.")
    code = serializers.CharField(help_text="A stable code for the program.")


class WrongCodeSerializer(ErrorSerializer):
    """A wrong code: also how many codes may still be entered."""

    attempts_left = serializers.IntegerField()
