"""Serializers of what the provider sends."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from django_voicepassword.client import CallRecord, parse_callback

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
        if record.state is None and not record.state_label.strip():
            raise serializers.ValidationError({"state": _("This field may not be blank.")})
        return {**attrs, "record": record}
