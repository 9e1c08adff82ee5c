"""Tests for django_voicepassword.phone.

Valid Russian mobiles come from the project's test range +7 999 000-00-00 …
+7 999 000-00-99. The numbers of the issue text (+7 916 123-45-67, +7 701 …,
+7 800 000-00-00, +7 809 …) are used as the issue wrote them. Foreign numbers
are from ranges reserved for fiction: US 555-01xx, UK 020 7946 0xxx,
Australia 0491 570 156-159.
"""

from __future__ import annotations

import pickle
import string
from typing import Any

import phonenumbers
import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import translation
from django.utils.functional import Promise
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from django_voicepassword.conf import ConfigurationError
from django_voicepassword.phone import (
    MASK_PLACEHOLDER,
    MAX_INPUT_LENGTH,
    InvalidPhoneNumber,
    check_policy,
    format_international,
    mask,
    normalize,
)

ISSUE_NUMBER = "79161234567"
TEST_MOBILE = "79990000042"
KZ_MOBILE = "+77012345678"
TOLL_FREE = "+78000000000"
PREMIUM_RATE = "+78091234567"
US_NUMBER = "+12015550123"  # FIXED_LINE_OR_MOBILE, as all of NANP
UK_LANDLINE = "+442079460123"
AU_MOBILE = "+61491570156"


def policy(**overrides: Any) -> override_settings:
    """override_settings for VOICEPASSWORD, keeping the suite's other keys."""
    return override_settings(VOICEPASSWORD={**settings.VOICEPASSWORD, **overrides})


def any_policy() -> override_settings:
    return policy(ALLOWED_REGIONS=[], ALLOWED_NUMBER_TYPES=[])


def reason(value: Any, **kwargs: Any) -> str:
    with pytest.raises(InvalidPhoneNumber) as info:
        normalize(value, **kwargs)
    return info.value.code


# --- normalize: what is accepted -----------------------------------------------------


@pytest.mark.parametrize(
    "spelling",
    [
        "+7 (916) 123-45-67",
        "8 916 1234567",
        "8 (916) 123 45 67",
        "79161234567",
        "+79161234567",
        "9161234567",
        "７９１６１２３４５６７",  # full-width  # noqa: RUF001
        "٧٩١٦١٢٣٤٥٦٧",  # Arabic-Indic
        "۷۹۱۶۱۲۳۴۵۶۷",  # Extended Arabic-Indic
        "＋７ （９１６） １２３－４５－６７",  # noqa: RUF001
        "  +7 916 123 45 67\n",
        "\u00a0+7\u00a0916\u00a0123\u00a045\u00a067\u00a0",
        "+7\u2009916\u2009123\u201145\u201367",  # thin spaces, non-breaking hyphen, en dash
        "+7.916.123.45.67",
        "+7/916/123-45-67",
        "+7 [916] 123-45-67",
        "\u202a+7 916 123-45-67\u202c",  # the bidi marks phones add to copied numbers
        "\u200e+7\u200b916 123 45 67\ufeff",
        "810 7 916 123 45 67",  # the Russian international prefix
        "7 916 1234567",
    ],
)
def test_spellings_of_one_number(spelling):
    assert normalize(spelling) == ISSUE_NUMBER


@pytest.mark.parametrize(
    "spelling", ["+7 999 000-00-42", "8 999 000 00 42", "9990000042", "79990000042"]
)
def test_test_range(spelling):
    assert normalize(spelling) == TEST_MOBILE


def test_normalized_form_is_a_fixed_point():
    assert normalize(normalize("8 (999) 000-00-42")) == TEST_MOBILE


def test_explicit_region():
    assert normalize("9990000042", region="RU") == TEST_MOBILE
    # Read in Kazakhstan, the same digits are a Kazakh national number.
    assert normalize("7012345678", region="KZ", enforce_policy=False) == "77012345678"


def test_phone_region_setting():
    with policy(PHONE_REGION="US", ALLOWED_REGIONS=["US"], ALLOWED_NUMBER_TYPES=[]):
        assert normalize("(201) 555-0123") == "12015550123"
        assert reason("9990000042") == "invalid"
        # A number with its country code is read the same whatever the region.
        assert normalize("+7 999 000 00 42", enforce_policy=False) == TEST_MOBILE


def test_international_digits_without_plus_fall_back_to_e164():
    # Not a Russian number when read in RU, so read as the provider's form.
    with any_policy():
        assert normalize(AU_MOBILE[1:]) == AU_MOBILE[1:]
        assert normalize(UK_LANDLINE[1:]) == UK_LANDLINE[1:]


def test_typed_reading_wins_over_the_providers_form():
    # Ten digits may be both a foreign number in the provider's form and a
    # Russian one typed without its 7: typed input is read as typed. (The
    # foreign number is libphonenumber's published example, not a subscriber.)
    example = phonenumbers.example_number_for_type("NO", phonenumbers.PhoneNumberType.MOBILE)
    assert example is not None
    digits = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)[1:]
    assert len(digits) == 10
    assert normalize(digits, enforce_policy=False) == "7" + digits
    # With the "+" it is unambiguous, and the stored-form readers read E.164 first.
    assert normalize("+" + digits, enforce_policy=False) == digits
    assert format_international(digits).startswith("+47 ")
    assert mask(digits).startswith("+47 ")
    with any_policy():
        check_policy(digits)
    with pytest.raises(InvalidPhoneNumber) as info:
        check_policy(digits)
    assert info.value.code == "region"


# --- normalize: what is refused ------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("\u00a0\t\n", "empty"),
        ("\u200b\u202a", "empty"),
        ("+7 916 123 45 67 ext. 12", "extension"),
        ("+7 916 123 45 67 доб. 12", "extension"),
        ("+7 916 123 45 67 x12", "extension"),
        ("+79161234567;ext=12", "extension"),
        ("+7 916 123 45 67 #12", "extension"),
        ("abc", "invalid"),
        ("+7 916 CALL ME", "invalid"),  # libphonenumber would read a vanity number
        ("+7 916 ***-**-67", "invalid"),  # a masked number pasted back
        ("+7*916*1234567", "invalid"),
        ("79161234567!!", "invalid"),
        ("tel:+79161234567", "invalid"),
        ("+79161234567;isub=1", "invalid"),
        ("+7 916 123 45 67 ext", "invalid"),
        ("+7 916 123 45 67 доб.", "invalid"),
        ("7+9161234567", "invalid"),
        ("+7 916 123 45 67 +7 916 123 45 67", "invalid"),
        ("+", "invalid"),
        ("8", "invalid"),
        ("+7", "invalid"),
        ("+7 916 123 45 6", "invalid"),  # too short
        ("+7 916 123 45 678", "invalid"),  # too long
        ("916123456", "invalid"),
        ("99161234567", "invalid"),
        ("007 916 123 45 67", "invalid"),  # 00 is not how Russia dials abroad
        ("+7 916 123 45 67²", "invalid"),  # a digit, but not a decimal one
        ("7916123456²", "invalid"),
        ("+0 123 456 7890", "invalid"),
        ("+999 123 456 7890", "invalid"),  # no such country code
        ("9" * 20, "invalid"),
        ("1" * 15, "invalid"),
    ],
)
def test_refusals(value, code):
    assert reason(value) == code


@pytest.mark.parametrize("value", [None, 79161234567, b"79161234567", ["79161234567"], 7.9])
def test_non_strings_are_invalid(value):
    assert reason(value) == "invalid"


def test_input_length_is_capped():
    padded = ISSUE_NUMBER.center(MAX_INPUT_LENGTH)
    assert normalize(padded) == ISSUE_NUMBER
    assert reason(padded + " ") == "invalid"
    assert reason(" " * (MAX_INPUT_LENGTH + 1)) == "invalid"


def test_unknown_region_argument_is_a_programming_error():
    with pytest.raises(ValueError, match="Unknown region code 'ru'") as info:
        normalize("9990000042", region="ru")
    assert not isinstance(info.value, InvalidPhoneNumber)


def test_unknown_phone_region_setting():
    with policy(PHONE_REGION="XX"), pytest.raises(ConfigurationError, match="PHONE_REGION"):
        normalize("9990000042")


@pytest.mark.parametrize("name", ["MOBIL", "__firstlineno__", "values"])
def test_unknown_number_type_setting(name):
    with (
        policy(ALLOWED_NUMBER_TYPES=["MOBILE", name]),
        pytest.raises(ConfigurationError, match=name),
    ):
        normalize(TEST_MOBILE)


# --- policy --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "code"), [(KZ_MOBILE, "region"), (TOLL_FREE, "type"), (PREMIUM_RATE, "type")]
)
def test_policy_refusals_with_defaults(value, code):
    with pytest.raises(InvalidPhoneNumber) as info:
        normalize(value)
    assert info.value.code == code
    # The number was read: the refusal carries its normalized form.
    assert info.value.number == value[1:]
    with pytest.raises(InvalidPhoneNumber) as info:
        check_policy(value[1:])
    assert info.value.code == code


@pytest.mark.parametrize("value", [KZ_MOBILE, TOLL_FREE, PREMIUM_RATE])
def test_policy_widened(value):
    with any_policy():
        assert normalize(value) == value[1:]
        check_policy(value[1:])
    assert normalize(value, enforce_policy=False) == value[1:]


def test_region_allowlist_by_libphonenumber_not_by_prefix():
    with policy(ALLOWED_REGIONS=["KZ"]):
        assert normalize(KZ_MOBILE) == KZ_MOBILE[1:]
        assert reason(TEST_MOBILE) == "region"
    with policy(ALLOWED_REGIONS=("RU", "KZ")):
        assert normalize(KZ_MOBILE) == KZ_MOBILE[1:]
        assert normalize(TEST_MOBILE) == TEST_MOBILE


def test_number_type_allowlist():
    with policy(ALLOWED_NUMBER_TYPES=["MOBILE", "TOLL_FREE"]):
        assert normalize(TOLL_FREE) == TOLL_FREE[1:]
        assert reason(PREMIUM_RATE) == "type"
    with policy(ALLOWED_NUMBER_TYPES=["FIXED_LINE"]):
        assert reason(TEST_MOBILE) == "type"


def test_fixed_line_or_mobile_must_be_named():
    with policy(ALLOWED_REGIONS=["US"]):
        assert reason(US_NUMBER) == "type"
    with policy(ALLOWED_REGIONS=["US"], ALLOWED_NUMBER_TYPES=["MOBILE", "FIXED_LINE_OR_MOBILE"]):
        assert normalize(US_NUMBER) == US_NUMBER[1:]


def test_check_policy():
    check_policy(TEST_MOBILE)
    check_policy("+7 999 000-00-42")
    with pytest.raises(InvalidPhoneNumber) as info:
        check_policy("garbage")
    assert info.value.code == "invalid"
    with pytest.raises(InvalidPhoneNumber) as info:
        check_policy(AU_MOBILE[1:])
    assert info.value.code == "region"
    assert info.value.number == AU_MOBILE[1:]


# --- the exception -------------------------------------------------------------------


def test_exception_carries_code_and_message():
    with pytest.raises(InvalidPhoneNumber) as info:
        normalize("+7 916 123 45 67 ext. 12")
    exc = info.value
    assert isinstance(exc, ValueError)
    assert exc.code == "extension"
    assert exc.number is None
    assert str(exc) == "Phone numbers with an extension are not accepted."
    assert str(exc.message) == str(exc)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("empty", "Enter a phone number."),
        ("invalid", "Enter a valid phone number."),
        ("extension", "Phone numbers with an extension are not accepted."),
        ("region", "Numbers from this country or region are not accepted."),
        ("type", "This kind of number (for example toll-free or premium-rate) is not accepted."),
    ],
)
def test_messages(code, message):
    assert str(InvalidPhoneNumber(code)) == message


# A Moscow landline that libphonenumber reads as FIXED_LINE; all zeros, no subscriber's.
MOSCOW_LANDLINE = "+7 495 000-00-00"


@pytest.mark.parametrize(
    ("value", "kind", "english", "russian"),
    [
        (
            MOSCOW_LANDLINE,
            "FIXED_LINE",
            "Landline numbers are not accepted.",
            "Городские (стационарные) номера не принимаются.",
        ),
        (
            TOLL_FREE,
            "TOLL_FREE",
            "Toll-free numbers are not accepted.",
            "Бесплатные для звонящего номера не принимаются.",
        ),
        (
            PREMIUM_RATE,
            "PREMIUM_RATE",
            "Premium-rate numbers are not accepted.",
            "Платные номера с повышенным тарифом не принимаются.",  # noqa: RUF001
        ),
    ],
)
def test_type_refusal_names_the_kind(value, kind, english, russian):
    # The issue: a Moscow landline was told "This kind of number (for example
    # toll-free or premium-rate)", which names every kind but its own.
    with pytest.raises(InvalidPhoneNumber) as info:
        normalize(value)
    exc = info.value
    assert exc.code == "type"
    assert exc.number_type == kind
    assert str(exc) == english
    with translation.override("ru"):
        assert str(exc) == russian


def test_mobile_refusal_names_mobiles():
    with policy(ALLOWED_NUMBER_TYPES=["FIXED_LINE"]), pytest.raises(InvalidPhoneNumber) as info:
        check_policy(TEST_MOBILE)
    assert info.value.number_type == "MOBILE"
    assert str(info.value) == "Mobile numbers are not accepted."


def test_every_number_type_has_a_message_in_both_languages():
    from django_voicepassword.phone import NUMBER_TYPES

    assert set(InvalidPhoneNumber.type_messages) == set(NUMBER_TYPES)
    for kind in NUMBER_TYPES:
        exc = InvalidPhoneNumber("type", number_type=kind)
        english = str(exc)
        assert english.endswith("not accepted.")
        with translation.override("ru"):
            assert str(exc) != english
            assert str(exc).endswith("не принимаются.")


def test_type_refusal_pickles_with_its_kind():
    sent = InvalidPhoneNumber("type", number="1", number_type="VOIP")
    exc = pickle.loads(pickle.dumps(sent))  # noqa: S301  (our own bytes)
    assert (exc.code, exc.number, exc.number_type) == ("type", "1", "VOIP")
    assert str(exc) == "Internet telephony (VoIP) numbers are not accepted."


def test_message_is_lazy():
    # Translated when shown, in the language active then, not at import time.
    exc = InvalidPhoneNumber("invalid")
    assert isinstance(exc.message, Promise)
    with translation.override("ru"):
        assert str(exc) == translation.gettext("Enter a valid phone number.")


def test_exception_never_holds_the_raw_input():
    raw = "+7 916 123 45 67 доб. 12"
    with pytest.raises(InvalidPhoneNumber) as info:
        normalize(raw)
    exc = info.value
    for text in (str(exc), repr(exc), *map(str, exc.args)):
        assert "916" not in text


def test_refusal_repr_hides_the_number():
    with pytest.raises(InvalidPhoneNumber) as info:
        normalize(KZ_MOBILE)
    assert repr(info.value) == "InvalidPhoneNumber('region')"
    assert "701" not in str(info.value)


def test_exception_pickles():
    exc = InvalidPhoneNumber("region", number="77012345678")
    copy = pickle.loads(pickle.dumps(exc))  # noqa: S301  (our own bytes)
    assert (copy.code, copy.number, str(copy)) == (exc.code, exc.number, str(exc))


# --- display -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        (ISSUE_NUMBER, "+7 916 ***-**-67"),
        ("+7 (916) 123-45-67", "+7 916 ***-**-67"),
        (TEST_MOBILE, "+7 999 ***-**-42"),
        (KZ_MOBILE[1:], "+7 701 *** **78"),  # refused by policy, still masked
        (TOLL_FREE[1:], "+7 800 ***-**-00"),
        (US_NUMBER[1:], "+1 201-***-**23"),
        (UK_LANDLINE[1:], "+44 20 **** **23"),
        (AU_MOBILE[1:], "+61 49* *** *56"),  # at least half hidden
    ],
)
def test_mask(number, masked):
    assert mask(number) == masked


def test_mask_hides_half_when_the_first_group_is_long():
    # Niue's numbers are short; the first group and the last two digits would
    # otherwise leave nothing hidden. (libphonenumber's example number.)
    example = phonenumbers.example_number_for_type("NU", phonenumbers.PhoneNumberType.MOBILE)
    assert example is not None
    e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    masked = mask(e164)
    national = masked.removeprefix("+683 ")
    assert national.count("*") >= sum(c.isdigit() for c in national)
    assert masked.endswith(e164[-2:])


@pytest.mark.parametrize(
    "value", [None, "", "garbage", "+7 916 ***-**-67", "+7 916 123 45 67 ext. 12", 79161234567]
)
def test_mask_placeholder(value):
    assert mask(value) == MASK_PLACEHOLDER


@pytest.mark.parametrize(
    ("number", "formatted"),
    [
        (ISSUE_NUMBER, "+7 916 123-45-67"),
        ("8 (999) 000-00-42", "+7 999 000-00-42"),
        (KZ_MOBILE[1:], "+7 701 234 5678"),
        (US_NUMBER[1:], "+1 201-555-0123"),
    ],
)
def test_format_international(number, formatted):
    assert format_international(number) == formatted


@pytest.mark.parametrize("value", ["", "garbage", None, "+79161234567 ext. 1"])
def test_format_international_refuses_garbage(value):
    with pytest.raises(InvalidPhoneNumber):
        format_international(value)


# --- properties ----------------------------------------------------------------------

_DIGIT_SCRIPTS = [
    "0123456789",
    "０１２３４５６７８９",  # noqa: RUF001
    "٠١٢٣٤٥٦٧٨٩",
    "۰۱۲۳۴۵۶۷۸۹",
]
_SEPARATORS = ["", " ", "-", ".", "/", "\u00a0", "\u2009", "\u2013", "\u2011", "\u2212", " - "]
_SPACE = st.text(alphabet=" \t\n\u00a0\u2009\u3000\u202f", max_size=3)


@st.composite
def spellings(draw):
    """One test-range number, written in any of the ways people write it."""
    last = draw(st.integers(min_value=0, max_value=99))
    national = f"99900000{last:02d}"
    digits = "7" + national
    prefix = draw(st.sampled_from(["+7", "7", "8", "", "＋7", "810 7"]))  # noqa: RUF001
    # Cut the national number into groups at random places.
    cuts = sorted(draw(st.sets(st.integers(min_value=1, max_value=9), max_size=9)))
    groups = [national[a:b] for a, b in zip([0, *cuts], [*cuts, 10], strict=True)]
    if draw(st.booleans()) and cuts and cuts[0] == 3:
        groups[0] = "(" + groups[0] + ")"
    parts = [prefix, *groups] if prefix else groups
    text = parts[0]
    for part in parts[1:]:
        text += draw(st.sampled_from(_SEPARATORS)) + part
    # Substitute digits one by one from any script (mixing them too).
    text = "".join(
        draw(st.sampled_from(_DIGIT_SCRIPTS))[int(c)] if c.isdigit() else c for c in text
    )
    return draw(_SPACE) + text + draw(_SPACE), digits


_PHONEISH = st.lists(
    st.sampled_from(
        [
            *string.digits,
            *"+-.()/[] #;=*~,xX",
            *"７٧۷９१𝟗²",
            "ext",
            "доб",
            ";ext=",
            "\u00a0",
            "\u200b",
            "\u202a",
            "\u00ad",
            "\u2013",
            "+7",
            "8",
            "999",
            "800",
            "701",
        ]
    ),
    max_size=25,
).map("".join)
_ANY_INPUT = st.one_of(
    st.text(),
    _PHONEISH,
    st.text(max_size=200),
    st.none(),
    st.integers(),
    st.binary(max_size=20),
)

_PROPERTY = hypothesis_settings(
    deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow]
)


@_PROPERTY
@given(spellings())
def test_every_spelling_normalizes_to_the_same_number(case):
    text, digits = case
    assert normalize(text) == digits


def outcome(value: Any, **kwargs: Any) -> tuple[str | None, str | None]:
    """(result, None) or (None, the refusal's code); anything else propagates."""
    try:
        return normalize(value, **kwargs), None
    except InvalidPhoneNumber as exc:
        return None, exc.code


@_PROPERTY
@given(_ANY_INPUT)
def test_normalize_raises_nothing_but_invalid_phone_number(value):
    result, code = outcome(value)
    if result is None:
        assert code in InvalidPhoneNumber.messages
        return
    # With the default policy only Russian mobiles pass, and they are fixed points.
    assert result.isascii()
    assert result.isdigit()
    assert len(result) == 11
    assert result.startswith("79")
    assert normalize(result) == result


@_PROPERTY
@given(_ANY_INPUT)
def test_normalize_without_policy_raises_nothing_but_invalid_phone_number(value):
    with any_policy():
        result, code = outcome(value)
    if result is None:
        assert code in {"empty", "invalid", "extension"}
        return
    assert result == normalize(value, enforce_policy=False)
    assert result.isascii()
    assert result.isdigit()
    assert 3 <= len(result) <= 15
    assert normalize("+" + result, enforce_policy=False) == result


def _check_mask(value: Any) -> None:
    masked = mask(value)
    try:
        normalize(value, enforce_policy=False)
    except InvalidPhoneNumber:
        assert masked == MASK_PLACEHOLDER
        return
    full = format_international(value)
    assert masked.startswith("+")
    country_code, _, national = masked.partition(" ")
    assert country_code[1:].isdigit()
    # Same shape as the full form; every digit is either shown as is or hidden.
    assert len(masked) == len(full)
    for shown, real in zip(masked, full, strict=True):
        assert shown in (real, "*")
        assert shown != "*" or real.isdigit()
    visible = sum(c.isdigit() for c in national)
    hidden = national.count("*")
    assert visible <= hidden
    # No more than the first group and the last two digits.
    first_group = full.partition(" ")[2]
    first_group = first_group[: len(first_group) - len(first_group.lstrip(string.digits))]
    assert visible <= len(first_group) + 2


@_PROPERTY
@given(_ANY_INPUT)
def test_mask_never_raises_and_hides_at_least_half(value):
    _check_mask(value)


@_PROPERTY
@given(spellings())
def test_mask_of_any_spelling(case):
    text, digits = case
    assert mask(text) == mask(digits) == f"+7 999 ***-**-{digits[-2:]}"
    _check_mask(text)


def test_mask_of_libphonenumber_examples():
    # Every country's example numbers: the rule holds whatever the grouping.
    checked = 0
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for number_type in phonenumbers.PhoneNumberType.values():
            example = phonenumbers.example_number_for_type(region, number_type)
            if example is not None:
                _check_mask(
                    phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
                )
                checked += 1
    assert checked > 500
