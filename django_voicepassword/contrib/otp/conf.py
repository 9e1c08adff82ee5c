"""The device's settings: ``OTP_VOICEPASSWORD_*``, named as django-otp's plugins name theirs.

Read at call time (never captured at import), so ``override_settings`` reaches
them. The package's own settings (limits, budget, ``CODE_KEY``,
``FLASH_CODE_SOURCE``, ``MAX_ATTEMPTS``, ``USER_PHONE_FIELD``) stay in
``VOICEPASSWORD`` and apply to the device as to everything else.
"""

from __future__ import annotations

from typing import Final

from django.conf import settings as django_settings

from django_voicepassword.conf import ConfigurationError

__all__ = ["DEFAULTS", "get"]

#: Every ``OTP_VOICEPASSWORD_*`` setting and its default (``docs/howto/otp.md``).
DEFAULTS: Final[dict[str, int]] = {
    # Seconds a code sent by a call can be entered (django-otp's ``valid_until``).
    "OTP_VOICEPASSWORD_TOKEN_VALIDITY": 300,
    # django-otp's exponential back-off after wrong codes: 1, 2, 4, 8 ... seconds
    # times this factor; 0 turns it off.
    "OTP_VOICEPASSWORD_THROTTLE_FACTOR": 1,
    # Seconds after a call before the device places another (django-otp's
    # CooldownMixin); 0 turns it off (the package's limits still apply).
    "OTP_VOICEPASSWORD_COOLDOWN_DURATION": 60,
}


def get(name: str) -> int:
    """The value of the setting ``name``: the site's, or its default.

    Raises :class:`~django_voicepassword.conf.ConfigurationError` (naming the
    setting) for a value that is not a whole number of 0 or more, or for a
    name that is not one of :data:`DEFAULTS`.
    """
    if name not in DEFAULTS:
        raise ConfigurationError(f"{name} is not a setting of django_voicepassword.contrib.otp.")
    value = getattr(django_settings, name, DEFAULTS[name])
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"{name} must be a whole number of 0 or more, not {value!r}.")
    return value
