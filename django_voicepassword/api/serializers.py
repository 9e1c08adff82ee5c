"""Serializers of what the provider sends."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from django_voicepassword.client import CallRecord, parse_callback
from django_voicepassword.models import Call, CallbackEvent

__all__ = ["CallbackSerializer"]

_SCALAR = (str, int)


class _Scalar(serializers.Field):  # type: ignore[type-arg]
    """A string or an integer, as the provider writes either; kept as text."""

    default_error_messages = {
        "invalid": _("Must be a string or an integer."),
        "max_length": _("Must be at most 64 characters."),
    }

    def to_internal_value(self, data: Any) -> str:
        if isinstance(data, bool) or not isinstance(data, _SCALAR):
            self.fail("invalid")
        text = str(data)
        if len(text) > 64:
            self.fail("max_length")
        return text

    def to_representation(self, value: Any) -> str:
        return str(value)


class CallbackSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """A status callback: ``{"id", "number", "duration", "state", "price", "date"}``.

    Strict about types (strings or integers only, nothing nested) and about
    meaning: every value is read by the client's parsers, so a callback that the
    app could not apply is refused here with a message that names the field.
    Unknown extra fields are allowed and kept in the stored payload.
    """

    id = _Scalar()
    number = _Scalar()
    state = _Scalar()
    duration = _Scalar(required=False)
    price = _Scalar(required=False)
    date = _Scalar(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Parse the payload into a :class:`CallRecord` (``attrs["record"]``)."""
        try:
            record: CallRecord = parse_callback(attrs)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc
        problem = _unstorable(record)
        if problem is not None:
            raise serializers.ValidationError(problem)
        if record.state is None and not record.state_label.strip():
            raise serializers.ValidationError({"state": _("This field may not be blank.")})
        return {**attrs, "record": record}


# Provider dates outside these bounds are garbage, and near the ends of
# datetime's range they overflow when converted to UTC or read back.
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 1, 1, tzinfo=UTC)


def _unstorable(record: CallRecord) -> str | None:
    """Why ``record`` does not fit the columns it is stored in, or ``None``.

    Checked here so that it is a 400: the database would refuse it with an
    error (PostgreSQL) or store what cannot be read back.
    """
    id_length = CallbackEvent._meta.get_field("provider_id").max_length
    if id_length is not None and len(record.id) > id_length:
        return f"id: at most {id_length} digits"
    price = Call._meta.get_field("price")
    places = price.decimal_places or 0
    whole_digits = (price.max_digits or 0) - places
    # The column rounds to its places: a price a hair below 10**whole_digits
    # would round up to it and overflow too.
    bound = Decimal(10) ** whole_digits - Decimal(5).scaleb(-places - 1)
    if record.price is not None and record.price >= bound:
        return f"price: at most {whole_digits} digits before the point"
    if record.date is not None and not _EARLIEST <= record.date < _LATEST:
        return "date: out of range"
    return None
