"""The forms of the HTML phone-login and phone-verification flows.

Both forms only read what a person typed; sending and checking codes is the
business of :mod:`django_voicepassword.verification`. The widgets carry what
browsers, password managers and screen readers need: ``autocomplete="tel"``
for the number, ``autocomplete="one-time-code"`` and a numeric keyboard for the
code, and, on a field with an error, ``aria-invalid`` plus ``aria-describedby``
pointing at the error text and focus on the field (the same on every Django
version the package supports, whatever Django itself adds).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from django_voicepassword import verification
from django_voicepassword.phone import MAX_INPUT_LENGTH, InvalidPhoneNumber, normalize

__all__ = ["ALERT_ID", "CodeForm", "PhoneForm"]

#: The id of the element that shows the errors of a whole form (the templates'
#: ``voicepassword/_errors.html``).
ALERT_ID = "vp-errors"


class _AccessibleForm(forms.Form):
    """Marks the fields that have errors for assistive technology, and focuses them.

    ``add_error`` is the one place every error goes through (field validation
    calls it too), so errors a view adds after a service refused the input
    (an invalid number, a wrong code) are marked the same way. An error of the
    whole form (a limit, a failed call) is not the field's fault: the field is
    not marked invalid, but described by the alert (:data:`ALERT_ID`) that
    shows the error, and keeps the focus.
    """

    #: The field that gets the focus when the page opens, error or not.
    focus_field = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.focus_field:
            self.fields[self.focus_field].widget.attrs["autofocus"] = True

    def _described_by(self, name: str, *ids: str) -> None:
        bound = self[name]
        described = [f"{bound.auto_id}_helptext"] if self.fields[name].help_text else []
        attrs = self.fields[name].widget.attrs
        for existing in attrs.get("aria-describedby", "").split():
            if existing not in described:
                described.append(existing)
        described += [i for i in ids if i not in described]
        attrs["aria-describedby"] = " ".join(described)

    def point_to_alert(self) -> None:
        """Describe the focused field by the page's alert (an error of the whole form)."""
        if self.focus_field:
            self._described_by(self.focus_field, ALERT_ID)

    def add_error(self, field: str | None, error: Any) -> None:
        """Add ``error`` as Django does, then mark the field it is about."""
        super().add_error(field, error)
        if field is None or field == NON_FIELD_ERRORS:
            # Django takes both for an error of the whole form (and refuses a
            # field the form does not have).
            self.point_to_alert()
            return
        self._described_by(field, f"{self[field].auto_id}_error")
        attrs = self.fields[field].widget.attrs
        if attrs.get("aria-invalid") == "true":
            return
        if not any(f.widget.attrs.get("aria-invalid") == "true" for f in self.fields.values()):
            # The first field with an error gets the focus.
            for other in self.fields.values():
                other.widget.attrs.pop("autofocus", None)
            attrs["autofocus"] = True
        attrs["aria-invalid"] = "true"


class PhoneForm(_AccessibleForm):
    """The phone number to send a code to.

    ``cleaned_data["number"]`` is the normalized number (``phone.normalize``:
    the region and number-type policy applied); ``cleaned_data["next"]`` is the
    address to go to afterwards, as sent, unchecked: the view checks it.
    """

    focus_field = "number"

    number = forms.CharField(
        label=_("Phone number"),
        max_length=MAX_INPUT_LENGTH,
        help_text=_("With the country code, for example +7 999 000-00-01."),
        widget=forms.TextInput(
            attrs={
                "type": "tel",
                "autocomplete": "tel",
                "inputmode": "tel",
                "spellcheck": "false",
            }
        ),
        error_messages={
            "required": InvalidPhoneNumber.messages["empty"],
            "max_length": InvalidPhoneNumber.messages["invalid"],
        },
    )
    next = forms.CharField(required=False, widget=forms.HiddenInput, max_length=2048)

    def clean_number(self) -> str:
        """Normalize the number; refuse it with :class:`InvalidPhoneNumber`'s message."""
        try:
            return normalize(self.cleaned_data["number"])
        except InvalidPhoneNumber as error:
            raise forms.ValidationError(error.message, code=error.code) from None


class CodeForm(_AccessibleForm):
    """The code a person received: ``code_length`` digits.

    The code is read by :func:`~django_voicepassword.verification.clean_code`,
    as the services read it: any decimal digits (Arabic-Indic ``١٢٣٤`` is
    ``1234``), whitespace ignored. A malformed code (letters, too few digits)
    is refused here and costs no attempt; ``cleaned_data["code"]`` is ASCII
    digits.
    """

    focus_field = "code"

    code = forms.CharField(
        label=_("Code"),
        # Stripping is clean_code's business (it drops whitespace anywhere).
        strip=False,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "one-time-code",
                "inputmode": "numeric",
                "spellcheck": "false",
                "class": "vp-code-input",
            }
        ),
    )

    def __init__(self, *args: Any, code_length: int = 4, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.code_length = code_length
        field = self.fields["code"]
        # \p{Nd}: any decimal digit, as the server accepts (the browser compiles
        # pattern with the "v" flag, so Unicode properties work).
        field.widget.attrs["pattern"] = rf"\p{{Nd}}{{{code_length}}}"
        field.widget.attrs["size"] = str(code_length + 2)
        field.widget.attrs["title"] = self.malformed_message()
        field.error_messages["required"] = self.malformed_message()

    def malformed_message(self) -> str:
        """What to say about input that is not a code of the right length."""
        return ngettext(
            "Enter the %(count)d-digit code.",
            "Enter the %(count)d-digit code.",
            self.code_length,
        ) % {"count": self.code_length}

    def clean_code(self) -> str:
        """The code as ASCII digits, or a validation error."""
        code = verification.clean_code(self.cleaned_data["code"], self.code_length)
        if code is None:
            raise forms.ValidationError(self.malformed_message(), code="malformed")
        return code
