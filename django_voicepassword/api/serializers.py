"""Serializers of what the provider sends."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail
from rest_framework.fields import empty
from rest_framework.settings import api_settings

from django_voicepassword.client import CallRecord, parse_callback
from django_voicepassword.models import Call, CallbackEvent

__all__ = ["CallbackSerializer", "validate_callback"]

_SCALAR = (str, int)
_MAX_LENGTH = 64
#: Fields that may also be JSON numbers with a fraction (``"price": 0.35``).
_NUMERIC = frozenset({"price", "duration"})


class _Scalar(serializers.Field):  # type: ignore[type-arg]
    """A string or an integer, as the provider writes either; kept as text."""

    default_error_messages = {
        "invalid": _("Must be a string or an integer."),
        "invalid_number": _("Must be a string or a number."),
        "max_length": _("Must be at most 64 characters."),
    }

    def to_internal_value(self, data: Any) -> str:
        if isinstance(data, bool) or not isinstance(data, _SCALAR):
            self.fail("invalid")
        text = str(data)
        if len(text) > _MAX_LENGTH:
            self.fail("max_length")
        return text

    def to_representation(self, value: Any) -> str:
        return str(value)


class CallbackSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """A status callback: ``{"id", "number", "duration", "state", "price", "date"}``.

    Strict about types (strings or integers, and numbers for ``price`` and
    ``duration``; nothing nested) and about meaning: every value is read by
    the client's parsers, so a callback that the app could not apply is
    refused here with a message that names the field. An optional field that
    is ``null`` counts as absent, as a blank one does. Unknown extra fields are
    allowed and kept in the stored payload.

    The fields are declared for what reads a serializer's fields (schemas,
    documentation) and say which are required; validation is one pass over
    the six values (:meth:`to_internal_value`), with the fields' messages,
    instead of DRF's machinery per field, which cost more than the parsing
    itself. ``validated_data`` holds the six values as text and ``"record"``,
    the parsed :class:`CallRecord`.
    """

    id = _Scalar()
    number = _Scalar()
    state = _Scalar()
    duration = _Scalar(required=False)
    price = _Scalar(required=False)
    date = _Scalar(required=False)

    def run_validation(self, data: Any = empty) -> Any:
        """Refuse a missing or null body, then :meth:`to_internal_value`.

        The serializer has no validators and no read-only fields with
        defaults, so DRF's ``run_validators`` and ``validate`` would do
        nothing but bind the fields.
        """
        is_empty_value, data = self.validate_empty_values(data)
        if is_empty_value:
            return data
        return self.to_internal_value(data)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        """Check every field's type and length, then parse the whole callback."""
        return validate_callback(data)


def validate_callback(data: Any) -> dict[str, Any]:
    """:class:`CallbackSerializer`'s validation without a serializer instance.

    What :meth:`CallbackSerializer.to_internal_value` does, for the callback
    view, which calls it on the parsed body directly: building a serializer
    and running ``is_valid()`` cost more than the checks themselves. Returns
    the ``validated_data``, or raises the same
    :class:`~rest_framework.exceptions.ValidationError` (a 400 with the same
    messages).
    """
    if data is None:
        # A body of JSON null: what Serializer.errors says of no data (untranslated there too).
        detail = ErrorDetail("No data provided", code="null")
        raise serializers.ValidationError({api_settings.NON_FIELD_ERRORS_KEY: [detail]})
    if not isinstance(data, Mapping):
        message = _INVALID.format(datatype=type(data).__name__)
        raise serializers.ValidationError(
            {api_settings.NON_FIELD_ERRORS_KEY: [message]}, code="invalid"
        )
    attrs: dict[str, str] = {}
    values: dict[str, Any] = {}
    errors: dict[str, list[ErrorDetail]] = {}
    for name, required in _FIELDS:
        value = data.get(name, empty)
        if value is empty or (value is None and not required):
            # A null "duration" or "price" says "none", as a blank one does.
            if required:
                errors[name] = [_error("required")]
            continue
        numeric = name in _NUMERIC
        if value is None:
            errors[name] = [_error("null")]
        elif isinstance(value, float) and numeric:
            # "price": 0.35 is JSON's way to write a price; the parsers read
            # the float through its shortest repr, so it is 0.35 exactly.
            attrs[name], values[name] = repr(value), value
        elif isinstance(value, bool) or not isinstance(value, _SCALAR):
            errors[name] = [_error("invalid_number" if numeric else "invalid")]
        else:
            text = value if isinstance(value, str) else str(value)
            if len(text) > _MAX_LENGTH:
                errors[name] = [_error("max_length")]
            else:
                attrs[name] = values[name] = text
    if errors:
        raise serializers.ValidationError(errors)
    try:
        record: CallRecord = parse_callback(values)
    except ValueError as exc:
        raise _not_a_callback(str(exc)) from exc
    problem = _unstorable(record)
    if problem is not None:
        raise _not_a_callback(problem)
    if record.state is None and not record.state_label.strip():
        raise serializers.ValidationError({"state": [_error("blank")]})
    return {**attrs, "record": record}


#: The fields of a callback and whether each is required, as declared.
_FIELDS = tuple(
    (name, field.required) for name, field in CallbackSerializer._declared_fields.items()
)

#: Every message a field of :class:`CallbackSerializer` may fail with: DRF's
#: own (translated by DRF) and the scalar's.
_MESSAGES = {
    "required": serializers.Field.default_error_messages["required"],
    "null": serializers.Field.default_error_messages["null"],
    "blank": serializers.CharField.default_error_messages["blank"],
    **_Scalar.default_error_messages,
}


#: The message of a body that is not an object, as DRF's Serializer words it.
_INVALID = serializers.Serializer.default_error_messages["invalid"]


def _error(code: str) -> ErrorDetail:
    return ErrorDetail(str(_MESSAGES[code]), code=code)


def _not_a_callback(message: str) -> serializers.ValidationError:
    # Not one field's fault: a non-field error, as DRF reports validate()'s.
    return serializers.ValidationError({api_settings.NON_FIELD_ERRORS_KEY: [message]})


# Provider dates outside these bounds are garbage, and near the ends of
# datetime's range they overflow when converted to UTC or read back.
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 1, 1, tzinfo=UTC)


@functools.cache
def _bounds() -> tuple[int | None, int, Decimal]:
    """The longest request id, and the price's whole digits and bound, from the columns."""
    id_length = CallbackEvent._meta.get_field("provider_id").max_length
    price = Call._meta.get_field("price")
    places = price.decimal_places or 0
    whole_digits = (price.max_digits or 0) - places
    # The column rounds to its places: a price a hair below 10**whole_digits
    # would round up to it and overflow too.
    bound = Decimal(10) ** whole_digits - Decimal(5).scaleb(-places - 1)
    return id_length, whole_digits, bound


def _unstorable(record: CallRecord) -> str | None:
    """Why ``record`` does not fit the columns it is stored in, or ``None``.

    Checked here so that it is a 400: the database would refuse it with an
    error (PostgreSQL) or store what cannot be read back.
    """
    id_length, whole_digits, bound = _bounds()
    if id_length is not None and len(record.id) > id_length:
        return f"id: at most {id_length} digits"
    if record.price is not None and record.price >= bound:
        return f"price: at most {whole_digits} digits before the point"
    if record.date is not None and not _EARLIEST <= record.date < _LATEST:
        return "date: out of range"
    return None
