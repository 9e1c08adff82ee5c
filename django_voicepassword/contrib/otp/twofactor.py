"""The "flash call" method of django-two-factor-auth, beside its own methods.

Registered by the app's ``ready()`` when ``two_factor`` is installed. What
works through two_factor's plugin interface alone (1.18): the login page
(the device calls when the token step opens; the page says what the call
said, or why no call was placed; 4-digit codes; "Call +7 999 ***-**-01"
among the other methods), the profile page and disabling. The set-up wizard
does not: its ``SetupView.done()`` saves the device only for the method codes
it names (``call``, ``sms``, ``yubikey``, ``email``, ``webauthn``), so any
other plugin's set-up ends in an ``UnboundLocalError``. :class:`SetupView`
here is two_factor's with that one step done for this method too; a site
that lets users set the method up mounts it at two_factor's set-up URL
(``docs/howto/otp.md``, ``docs/decisions.md``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import django_otp
from django import forms
from django.shortcuts import redirect
from django.utils.translation import gettext_lazy as _
from two_factor.forms import AuthenticationTokenForm as BaseTokenForm
from two_factor.plugins.registry import MethodBase, registry
from two_factor.views import SetupView as BaseSetupView

from django_voicepassword.contrib.otp.models import VoicePasswordDevice
from django_voicepassword.phone import InvalidPhoneNumber, mask, normalize
from django_voicepassword.verification import CODE_LENGTH

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

__all__ = [
    "AuthenticationTokenForm",
    "DeviceValidationForm",
    "PhoneNumberForm",
    "SetupView",
    "VoicePasswordMethod",
    "register",
]

_CODE_ATTRS = {
    "autofocus": "autofocus",
    "inputmode": "numeric",
    "pattern": "[0-9]*",
    "autocomplete": "one-time-code",
}


class AuthenticationTokenForm(BaseTokenForm):  # type: ignore[misc]  # two_factor is untyped
    """two_factor's token form for a 4-digit code (its own takes ``TWO_FACTOR_TOTP_DIGITS``)."""

    otp_token = forms.RegexField(
        label=_("Code"),
        regex=r"^[0-9]*$",
        min_length=CODE_LENGTH,
        max_length=CODE_LENGTH,
        widget=forms.TextInput(attrs=_CODE_ATTRS),
    )


class PhoneNumberForm(forms.Form):
    """The set-up step that asks for the number to call."""

    number = forms.CharField(label=_("Phone number"), max_length=64)

    def __init__(self, **kwargs: Any) -> None:
        kwargs.pop("device", None)
        super().__init__(**kwargs)

    def clean_number(self) -> str:
        """The number, normalized by the site's policy (the reason when it is refused)."""
        try:
            return normalize(self.cleaned_data["number"])
        except InvalidPhoneNumber as error:
            raise forms.ValidationError(error.message, code=error.code) from None


class DeviceValidationForm(forms.Form):
    """The set-up step that checks the code of the first call (a string: codes start with 0)."""

    token = forms.CharField(
        label=_("Code"),
        min_length=CODE_LENGTH,
        max_length=CODE_LENGTH,
        widget=forms.TextInput(attrs=_CODE_ATTRS),
    )
    #: Once checked, the code is spent: two_factor must not check it again.
    idempotent = False

    def __init__(self, device: VoicePasswordDevice, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.device = device

    def clean_token(self) -> str:
        """The code, if the device accepts it."""
        token: str = self.cleaned_data["token"]
        if not self.device.verify_token(token):
            raise forms.ValidationError(_("This code is not valid."), code="invalid_token")
        return token


class VoicePasswordMethod(MethodBase):  # type: ignore[misc]  # two_factor is untyped
    """two_factor's method for :class:`VoicePasswordDevice`: a flash call (or a voice call)."""

    code = "voicepassword"
    verbose_name = _("Flash call")

    def get_devices(self, user: Any) -> Any:
        """The user's confirmed devices."""
        return VoicePasswordDevice.objects.devices_for_user(user, confirmed=True)

    def recognize_device(self, device: Any) -> bool:
        """Whether ``device`` is one of ours."""
        return isinstance(device, VoicePasswordDevice)

    def get_setup_forms(self, wizard: Any) -> dict[str, type[forms.Form]]:
        """A number to call (unless the user has one already), then the code of a call."""
        steps: dict[str, type[forms.Form]] = {}
        if not VoicePasswordDevice(user=wizard.request.user).get_number():
            steps[self.code] = PhoneNumberForm
        steps["validation"] = DeviceValidationForm
        return steps

    def get_device_from_setup_data(
        self, request: HttpRequest, setup_data: Any, **kwargs: Any
    ) -> VoicePasswordDevice:
        """The device being set up: the user's unconfirmed one (the wizard spans requests)."""
        number = ((setup_data or {}).get(self.code) or {}).get("number") or ""
        device: VoicePasswordDevice | None = (
            VoicePasswordDevice.objects.filter(user_id=request.user.pk, confirmed=False)
            .order_by("-pk")
            .first()
        )
        if device is None:
            return VoicePasswordDevice(
                user=request.user, name="default", confirmed=False, number=number
            )
        if number and device.number != number:
            device.number = number
            device.save(update_fields=["number"])
        return device

    def get_token_form_class(self) -> type[forms.Form]:
        """The 4-digit token form."""
        return AuthenticationTokenForm

    def get_action(self, device: VoicePasswordDevice) -> str:
        """The button among "other methods": ``Call +7 999 ***-**-01``."""
        return str(_("Call %(number)s") % {"number": mask(device.get_number() or "")})

    def get_verbose_action(self, device: VoicePasswordDevice) -> str:
        """What the login page says: the message of the challenge just made, if any."""
        if device.challenge_message:
            return device.challenge_message
        return str(_("We are calling your phone: enter the last 4 digits of the calling number."))


class SetupView(BaseSetupView):  # type: ignore[misc]  # two_factor is untyped
    """two_factor's set-up wizard, finishing :class:`VoicePasswordMethod` too.

    Mount it before two_factor's URLs, at the same path, so that
    ``two_factor:setup`` lands here. Every other method is left to two_factor.
    """

    def done(self, form_list: Any, **kwargs: Any) -> HttpResponse:
        """Confirm and keep the device the first call proved, then log it in."""
        if self.get_method().code != VoicePasswordMethod.code:
            return super().done(form_list, **kwargs)  # type: ignore[no-any-return]
        self.request.session.pop(self.session_key_name, None)
        device = self.get_device()
        device.confirmed = True
        device.save()
        django_otp.login(self.request, device)
        return redirect(self.get_success_url())


def register() -> None:
    """Offer :class:`VoicePasswordMethod` among two_factor's methods (idempotent)."""
    registry.register(VoicePasswordMethod())
