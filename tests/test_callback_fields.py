"""The callback serializer's fields, read one by one as a schema or a form would.

``CallbackSerializer`` validates the six values in one pass of its own
(``tests/test_callback_input.py``); its declared fields must still say the
same thing to whatever reads a field alone (DRF's browsable API, a schema
generator, a site that reuses the serializer): a string or an integer, at
most 64 characters, nothing else.
"""

from __future__ import annotations

import pytest
from rest_framework.exceptions import ValidationError

from django_voicepassword.api.serializers import CallbackSerializer


@pytest.mark.parametrize(("value", "text"), [("ANSWERED", "ANSWERED"), (42, "42"), ("", "")])
def test_a_field_takes_a_string_or_an_integer_as_text(value, text):
    field = CallbackSerializer().fields["state"]
    assert field.run_validation(value) == text
    assert field.to_representation(value) == text


@pytest.mark.parametrize("value", [True, 1.5, {"nested": 1}, ["a"]])
def test_a_field_refuses_anything_else(value):
    field = CallbackSerializer().fields["id"]
    with pytest.raises(ValidationError) as refused:
        field.run_validation(value)
    assert refused.value.detail == ["Must be a string or an integer."]


def test_a_field_refuses_more_than_64_characters():
    field = CallbackSerializer().fields["number"]
    assert field.run_validation("7" * 64) == "7" * 64
    with pytest.raises(ValidationError) as refused:
        field.run_validation("7" * 65)
    assert refused.value.detail == ["Must be at most 64 characters."]


def test_the_fields_say_which_are_required():
    fields = CallbackSerializer().fields
    assert {name for name, field in fields.items() if field.required} == {"id", "number", "state"}
