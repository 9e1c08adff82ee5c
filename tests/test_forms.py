"""The login forms tell assistive technology which field is wrong, and where to look.

The pages' tests (``tests/test_views.py``) check one error at a time; these
check what a form does with several: the first field in error keeps the
focus, a field's description is never repeated, and an error of the whole
form points the focused field at the page's alert.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS

from django_voicepassword.forms import ALERT_ID, CodeForm, PhoneForm, _AccessibleForm

#: Input every field takes: the errors are the ones a view adds after a service refused it.
VALID = {"first": "1", "second": "2"}


class TwoFields(_AccessibleForm):
    focus_field = "first"

    first = forms.CharField(help_text="Digits only.")
    second = forms.CharField(widget=forms.TextInput(attrs={"aria-describedby": "hint"}))


class Unfocused(_AccessibleForm):
    only = forms.CharField()


def attrs(form: _AccessibleForm, name: str) -> dict[str, Any]:
    found: dict[str, Any] = form.fields[name].widget.attrs
    return found


def test_the_first_field_in_error_takes_the_focus_and_keeps_it():
    form = TwoFields(data=VALID)
    assert attrs(form, "first").get("autofocus") is True
    form.add_error("second", "Wrong.")
    assert "autofocus" not in attrs(form, "first")
    assert attrs(form, "second")["autofocus"] is True
    form.add_error("first", "Also wrong.")
    # Both are invalid; the focus stays where the first error put it.
    assert attrs(form, "first")["aria-invalid"] == "true"
    assert attrs(form, "second")["aria-invalid"] == "true"
    assert "autofocus" not in attrs(form, "first")
    assert attrs(form, "second")["autofocus"] is True


def test_a_fields_description_keeps_its_own_ids_and_never_repeats_one():
    form = TwoFields(data=VALID)
    form.add_error("second", "Wrong.")
    form.add_error("second", "Still wrong.")
    assert attrs(form, "second")["aria-describedby"] == "hint id_second_error"
    form.add_error("first", "Wrong.")
    form.add_error("first", "Still wrong.")
    assert attrs(form, "first")["aria-describedby"] == "id_first_helptext id_first_error"
    assert form.errors["second"] == ["Wrong.", "Still wrong."]


def test_an_error_of_the_whole_form_points_the_focused_field_at_the_alert():
    for whole in (None, NON_FIELD_ERRORS):
        form = TwoFields(data=VALID)
        form.add_error(whole, "Too many codes.")
        assert form.non_field_errors() == ["Too many codes."]
        assert attrs(form, "first")["aria-describedby"] == f"id_first_helptext {ALERT_ID}"
        # Not the field's fault: it is not marked invalid.
        assert "aria-invalid" not in attrs(form, "first")


def test_a_form_without_a_focus_field_focuses_nothing_until_an_error():
    form = Unfocused(data={"only": "x"})
    assert "autofocus" not in attrs(form, "only")
    form.add_error(None, "Too many codes.")
    assert "aria-describedby" not in attrs(form, "only")
    form.add_error("only", "Wrong.")
    assert attrs(form, "only")["autofocus"] is True


def test_the_login_forms_focus_their_field():
    assert PhoneForm().fields["number"].widget.attrs["autofocus"] is True
    assert CodeForm().fields["code"].widget.attrs["autofocus"] is True
