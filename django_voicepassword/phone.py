"""Phone numbers: the one way the app reads, checks and shows them.

Everything that stores, looks up, limits or sends a number passes it through
:func:`normalize` first, so the same subscriber is always the same string: the
provider's form, E.164 digits without the ``+`` (``"79161234567"``).

Reading is done by libphonenumber (``phonenumbers``), never by prefix tricks:
``+7`` is shared by Russia and Kazakhstan, and ``8 800`` is toll-free, so the
region and number-type policy (``ALLOWED_REGIONS``, ``ALLOWED_NUMBER_TYPES``)
asks libphonenumber what a number is.

Input is untrusted: every refusal is an :class:`InvalidPhoneNumber` whose
``code`` says why and whose ``message`` can be shown to the person who typed it.
The raw input is never put into an exception, so logging one leaks nothing
typed by a user.
"""

from __future__ import annotations

import functools
import unicodedata
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import phonenumbers
from django.utils.translation import gettext_lazy as _
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from django_voicepassword.conf import ConfigurationError
from django_voicepassword.conf import settings as vp_settings

if TYPE_CHECKING:
    from django_stubs_ext import StrPromise
    from phonenumbers import PhoneNumber

__all__ = [
    "MASK_PLACEHOLDER",
    "MAX_INPUT_LENGTH",
    "NUMBER_TYPES",
    "InvalidPhoneNumber",
    "Masked",
    "check_policy",
    "format_international",
    "mask",
    "normalize",
]

#: Longer input is refused before libphonenumber sees it. The longest E.164
#: number is 15 digits; 64 characters leave room for any sane spelling of it
#: while bounding the work an attacker can make one request cost.
MAX_INPUT_LENGTH = 64

#: What :func:`mask` shows for anything that is not a phone number.
MASK_PLACEHOLDER = "***"

Code = Literal["empty", "invalid", "extension", "region", "type"]


class InvalidPhoneNumber(ValueError):  # noqa: N818  (the name is the public contract)
    """A phone number that cannot be used, and why.

    ``code`` is one of ``"empty"``, ``"invalid"``, ``"extension"``, ``"region"``
    or ``"type"``; ``message`` is a translatable sentence for the person who
    typed the number (``str(exc)`` gives it). ``number`` is the normalized
    number when the number itself was read but the site's policy refused it
    (``"region"``, ``"type"``), else ``None``. ``number_type`` is the name of
    the refused kind (``"FIXED_LINE"``, ``"TOLL_FREE"``, ... of
    ``phonenumbers.PhoneNumberType``) for ``"type"``, and the message names
    that kind ("Landline numbers are not accepted."); else ``None``. The raw
    input is never kept.
    """

    messages: ClassVar[dict[str, StrPromise]] = {
        "empty": _("Enter a phone number."),
        "invalid": _("Enter a valid phone number."),
        "extension": _("Phone numbers with an extension are not accepted."),
        "region": _("Numbers from this country or region are not accepted."),
        # Only when the kind is not known (an exception built by hand).
        "type": _("This kind of number (for example toll-free or premium-rate) is not accepted."),
    }

    #: The ``"type"`` refusal's message for each kind of number, by the name of
    #: its ``PhoneNumberType``: the person learns what was wrong with the number
    #: they typed (a landline, say) and so what to type instead.
    type_messages: ClassVar[dict[str, StrPromise]] = {
        "FIXED_LINE": _("Landline numbers are not accepted."),
        "MOBILE": _("Mobile numbers are not accepted."),
        "FIXED_LINE_OR_MOBILE": _(
            "Numbers that may be either landline or mobile are not accepted."
        ),
        "TOLL_FREE": _("Toll-free numbers are not accepted."),
        "PREMIUM_RATE": _("Premium-rate numbers are not accepted."),
        "SHARED_COST": _("Shared-cost numbers are not accepted."),
        "VOIP": _("Internet telephony (VoIP) numbers are not accepted."),
        "PERSONAL_NUMBER": _("Personal (call forwarding) numbers are not accepted."),
        "PAGER": _("Pager numbers are not accepted."),
        "UAN": _("Company (universal access) numbers are not accepted."),
        "VOICEMAIL": _("Voicemail numbers are not accepted."),
        "UNKNOWN": _("Numbers of an unknown kind are not accepted."),
    }

    def __init__(
        self, code: Code, *, number: str | None = None, number_type: str | None = None
    ) -> None:
        self.code: Code = code
        self.number_type = number_type if code == "type" else None
        self.number = number
        # args holds the code, not the message or the number: tracebacks and
        # error trackers then show why without any personal data.
        super().__init__(code)

    @property
    def message(self) -> StrPromise:
        """The sentence for the person who typed the number (lazy: translated when shown)."""
        if self.number_type in self.type_messages:
            return self.type_messages[self.number_type]
        return self.messages[self.code]

    def __str__(self) -> str:
        return str(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions pickle through args; keep the keyword-only number too.
        return (
            type(self),
            (self.code,),
            {"number": self.number, "number_type": self.number_type},
        )


# Separators people type or paste, mapped to ASCII. Anything not here, not a
# digit and not whitespace makes the input "invalid" (letters, "*", "!", ...):
# libphonenumber would otherwise read letters as a vanity number and skip
# trailing junk, so a masked "+7 916 ***-**-67" or "call 8 916..." would pass.
_SEPARATORS: dict[str, str] = {
    "+": "+",
    "\uff0b": "+",  # full-width plus
    "-": "-",
    "\u2010": "-",  # hyphen
    "\u2011": "-",  # non-breaking hyphen
    "\u2012": "-",  # figure dash
    "\u2013": "-",  # en dash
    "\u2014": "-",  # em dash
    "\u2015": "-",  # horizontal bar
    "\u2212": "-",  # minus sign
    "\uff0d": "-",  # full-width hyphen-minus
    ".": ".",
    "\uff0e": ".",
    "/": "/",
    "\uff0f": "/",
    "(": "(",
    ")": ")",
    "\uff08": "(",
    "\uff09": ")",
    "[": "(",
    "]": ")",
    "\uff3b": "(",
    "\uff3d": ")",
}

#: Every ``PhoneNumberType`` name and its value: what ``ALLOWED_NUMBER_TYPES`` may
#: name (``getattr`` alone would also accept dunders such as ``__firstlineno__``).
NUMBER_TYPES: dict[str, int] = {
    name: value
    for name in dir(PhoneNumberType)
    if name.isupper() and isinstance(value := getattr(PhoneNumberType, name), int)
}

# The name of each PhoneNumberType value, for the refusal's message.
_TYPE_NAMES: dict[int, str] = {value: name for name, value in NUMBER_TYPES.items()}


def _clean(value: object) -> tuple[str, bool]:
    """Return ``value`` with digits in ASCII and separators simplified, and
    whether it holds anything that is neither (letters, symbols).

    Format characters (zero-width spaces, the bidi marks that phones add to
    copied numbers, soft hyphens) are dropped and any whitespace becomes a
    space; libphonenumber does not know all of them. Characters that are not
    allowed are kept, so libphonenumber can still spot an extension in them.
    """
    if not isinstance(value, str) or len(value) > MAX_INPUT_LENGTH:
        raise InvalidPhoneNumber("invalid")
    out: list[str] = []
    foreign = False
    for char in value:
        if char.isdecimal():
            # Full-width, Arabic-Indic, Extended Arabic-Indic, ... digits.
            out.append(str(unicodedata.decimal(char)))
        elif char.isspace():
            out.append(" ")
        elif char in _SEPARATORS:
            out.append(_SEPARATORS[char])
        elif unicodedata.category(char) != "Cf":
            foreign = True
            out.append(char)
    cleaned = "".join(out).strip()
    if not cleaned:
        raise InvalidPhoneNumber("empty")
    return cleaned, foreign


def _resolve_region(region: str | None) -> str:
    if region is None:
        region = vp_settings.PHONE_REGION
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ConfigurationError(
                f"VOICEPASSWORD['PHONE_REGION'] = {region!r} is not a region code "
                "libphonenumber knows (ISO 3166 in capitals, such as 'RU')."
            )
    elif region not in phonenumbers.SUPPORTED_REGIONS:
        # A programming error, not bad input: do not disguise it as one.
        raise ValueError(f"Unknown region code {region!r}; use ISO 3166 in capitals, e.g. 'RU'.")
    return region


def _try_parse(text: str, region: str | None) -> PhoneNumber | None:
    try:
        return phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None


def _parse(value: object, region: str | None, *, stored: bool) -> PhoneNumber:
    """Read ``value`` into a valid number without an extension, or raise.

    A string of bare digits is ambiguous: ``9161234567`` typed by a person is a
    national number of the default region, while ``61491570156`` from storage
    or the provider is E.164 without the ``+``. Typed input (``stored=False``)
    is read in the default region first and as E.164 only if that gives no valid
    number; stored input (``stored=True``) is read as E.164 first. Reading typed
    input as E.164 first would be worse: Russians type their ten digits without
    the 7, and some of those strings (a ``960 …`` mobile, say) are also valid
    E.164 numbers of countries whose codes begin with 9 (+960 is the Maldives).
    """
    text, foreign = _clean(value)
    default_region = _resolve_region(region)
    if text.isascii() and text.isdigit():
        typed = (text, default_region)
        e164 = ("+" + text, None)
        for candidate, candidate_region in (e164, typed) if stored else (typed, e164):
            numobj = _try_parse(candidate, candidate_region)
            if numobj is not None and phonenumbers.is_valid_number(numobj):
                return numobj
        raise InvalidPhoneNumber("invalid")
    numobj = _try_parse(text, default_region)
    if numobj is None:
        raise InvalidPhoneNumber("invalid")
    # The extension is checked before the foreign characters because that is
    # what "ext." / "доб." / ";ext=" are, and the person deserves to be told.
    if numobj.extension:
        raise InvalidPhoneNumber("extension")
    if foreign or not phonenumbers.is_valid_number(numobj):
        raise InvalidPhoneNumber("invalid")
    return numobj


@functools.lru_cache(maxsize=16)
def _allowed_types(names: tuple[str, ...]) -> frozenset[int]:
    unknown = [name for name in names if name not in NUMBER_TYPES]
    if unknown:
        raise ConfigurationError(
            "Unknown number type(s) in VOICEPASSWORD['ALLOWED_NUMBER_TYPES']: "
            f"{', '.join(sorted(unknown))}. Use names of phonenumbers.PhoneNumberType, "
            "such as 'MOBILE'."
        )
    return frozenset(NUMBER_TYPES[name] for name in names)


def _e164_digits(numobj: PhoneNumber) -> str:
    return phonenumbers.format_number(numobj, PhoneNumberFormat.E164)[1:]


def _enforce_policy(numobj: PhoneNumber, number: str) -> None:
    # Settings are read on every call, never captured: override_settings and
    # a reloaded configuration must take effect at once.
    regions = vp_settings.ALLOWED_REGIONS
    if regions and phonenumbers.region_code_for_number(numobj) not in regions:
        raise InvalidPhoneNumber("region", number=number)
    type_names = vp_settings.ALLOWED_NUMBER_TYPES
    kind = phonenumbers.number_type(numobj)
    if type_names and kind not in _allowed_types(tuple(type_names)):
        # Strict: FIXED_LINE_OR_MOBILE (what libphonenumber says for the whole
        # of NANP, for example) matches only when named itself.
        raise InvalidPhoneNumber("type", number=number, number_type=_TYPE_NAMES.get(kind))


def normalize(value: str, *, region: str | None = None, enforce_policy: bool = True) -> str:
    """Return the provider's form of a typed phone number: E.164 digits without ``+``.

    ``"+7 (916) 123-45-67"``, ``"8 916 1234567"`` and full-width digits all give
    ``"79161234567"``. Numbers without a country code are read in ``region``
    (default: the ``PHONE_REGION`` setting). A string of bare digits that is no
    valid number there is read as E.164 without the ``+`` (the provider's form),
    so a normalized number of the default region's country code normalizes to
    itself. Bare digits can be both, though: ten digits may be a foreign number
    in the provider's form and a Russian number typed without its ``7``, and
    then the typed reading wins. So ``normalize`` is for what people type; a
    stored number goes to :func:`check_policy`, :func:`mask` and
    :func:`format_international`, which read bare digits as E.164 first, or is
    made unambiguous as ``normalize("+" + number)``.

    With ``enforce_policy`` (the default) the number must also come from one of
    ``ALLOWED_REGIONS`` and be one of ``ALLOWED_NUMBER_TYPES``; see
    :func:`check_policy`.

    Raises :class:`InvalidPhoneNumber` and nothing else for any ``value``, with
    ``code`` ``"empty"``, ``"invalid"`` (garbage, letters, too short or long, not
    a number in use), ``"extension"``, ``"region"`` or ``"type"``. A wrong
    ``region`` argument raises ``ValueError``; a wrong setting raises
    :class:`~django_voicepassword.conf.ConfigurationError`.
    """
    numobj = _parse(value, region, stored=False)
    number = _e164_digits(numobj)
    if enforce_policy:
        _enforce_policy(numobj, number)
    return number


def check_policy(number: str) -> None:
    """Raise :class:`InvalidPhoneNumber` unless the site accepts ``number``.

    ``number`` is normally the normalized form (bare digits are read as E.164
    first); anything :func:`normalize` accepts works too. The refusal's
    ``code`` is ``"region"`` when the number's region (by libphonenumber, so
    ``+7 701`` is Kazakhstan) is not in ``ALLOWED_REGIONS``, ``"type"`` when
    its type is not in ``ALLOWED_NUMBER_TYPES``, or an input error code when
    ``number`` is not a usable number at all. :func:`normalize` applies the
    same policy; call this one on numbers that were stored earlier, since the
    policy may have changed since.
    """
    numobj = _parse(number, None, stored=True)
    _enforce_policy(numobj, _e164_digits(numobj))


def format_international(number: str) -> str:
    """Return ``number`` as people read it: ``"79161234567"`` → ``"+7 916 123-45-67"``.

    For people allowed to see the full number; see :func:`mask` for the rest.
    Accepts the normalized form or anything :func:`normalize` accepts (the
    policy is not applied) and raises :class:`InvalidPhoneNumber` otherwise.
    """
    numobj = _parse(number, None, stored=True)
    return phonenumbers.format_number(numobj, PhoneNumberFormat.INTERNATIONAL)


def mask(number: object) -> str:
    """Return ``number`` with most digits hidden: ``"79161234567"`` → ``"+7 916 ***-**-67"``.

    The international form keeps the country code, the first group of the
    national number and its last two digits; every other digit becomes ``*``.
    At least half of the national digits are always hidden: when the first
    group is long (or the number short) fewer digits are shown.

    Never raises on any input: anything that is not a valid number (``None``,
    garbage, a number with an extension) gives :data:`MASK_PLACEHOLDER`, since
    this is meant for templates and log lines. The policy is not applied. Only a
    broken ``PHONE_REGION`` setting raises, as everywhere.
    """
    try:
        numobj = _parse(number, None, stored=True)
    except InvalidPhoneNumber:
        # A broken PHONE_REGION (ConfigurationError) is not swallowed: the
        # system checks report it at start-up, and hiding it here would only
        # turn every number into the placeholder.
        return MASK_PLACEHOLDER
    # libphonenumber's international form is always "+<code> <national part>".
    prefix = f"+{numobj.country_code} "
    national = phonenumbers.format_number(numobj, PhoneNumberFormat.INTERNATIONAL)[len(prefix) :]
    digits = [i for i, char in enumerate(national) if char.isdigit()]
    # At most half of the national digits are shown, whatever the grouping.
    budget = len(digits) // 2
    last = min(2, budget)
    first_group = len(national) - len(national.lstrip("0123456789"))
    first = min(first_group, budget - last)
    hidden = set(digits[first : len(digits) - last])
    return prefix + "".join("*" if i in hidden else char for i, char in enumerate(national))


class Masked:
    """``number`` masked when it is printed: :func:`mask` for a log line's arguments.

    ``logger.debug("... %s", Masked(number))`` parses and masks the number only
    if the line is emitted; ``mask(number)`` as an argument does it for every
    call, at DEBUG off too (libphonenumber's parse costs about as much as a
    small database query).
    """

    __slots__ = ("number",)

    def __init__(self, number: object) -> None:
        self.number = number

    def __str__(self) -> str:
        return mask(self.number)

    def __repr__(self) -> str:
        return repr(mask(self.number))
