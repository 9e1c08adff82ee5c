"""Who sees full phone numbers in the admin, and how everybody else sees them.

Full numbers are shown only to active staff with the
``voicepassword.view_full_number`` permission; everyone else gets
:func:`~django_voicepassword.phone.mask`'s form everywhere the admin shows a
number: lists, detail pages, search results, exports, callback payloads.

Django calls a ``ModelAdmin``'s display methods with the object alone, without
the request, and one ``ModelAdmin`` serves every request (and thread). So the
decision is taken once per request, in ``get_queryset(request)``, and travels
with the rows as a constant annotation (:data:`VISIBILITY`): a display method
reads it from the object. A row that did not come through ``get_queryset``
has no annotation and is masked: the safe default.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

from django.db.models import BooleanField, Model, QuerySet, Value
from django.http import HttpRequest

from django_voicepassword.phone import InvalidPhoneNumber, format_international, mask

__all__ = [
    "FULL_NUMBER_PERMISSION",
    "NUMBER_KEYS",
    "VISIBILITY",
    "can_see_full_numbers",
    "mask_payload",
    "show_number",
    "show_user",
    "shows_full_numbers",
    "with_visibility",
]

_M = TypeVar("_M", bound=Model)

#: The permission that shows full numbers.
FULL_NUMBER_PERMISSION = "voicepassword.view_full_number"

#: The annotation that carries the request's decision on every row.
VISIBILITY = "vp_full_numbers"

#: Keys of a provider payload that hold a phone number.
NUMBER_KEYS = frozenset({"number", "phone", "ani"})


def can_see_full_numbers(request: HttpRequest) -> bool:
    """Whether the request's user may see full phone numbers."""
    user = getattr(request, "user", None)
    return bool(
        user is not None
        and user.is_active
        and user.is_staff
        and user.has_perm(FULL_NUMBER_PERMISSION)
    )


def with_visibility(queryset: QuerySet[_M], request: HttpRequest) -> QuerySet[_M]:
    """``queryset`` with the request's decision annotated on every row."""
    visible = Value(can_see_full_numbers(request), output_field=BooleanField())
    return cast("QuerySet[_M]", queryset.annotate(**{VISIBILITY: visible}))


def shows_full_numbers(obj: object) -> bool:
    """Whether ``obj`` came with the permission to show its full number."""
    return getattr(obj, VISIBILITY, False) is True


def show_number(number: str, *, full: bool) -> str:
    """``number`` as the admin shows it: international form when ``full``, else masked."""
    if not full:
        return mask(number)
    try:
        return format_international(number)
    except InvalidPhoneNumber:
        return number


#: Characters of a phone number as people write it.
_NUMBER_CHARACTERS = frozenset("0123456789+-() .")


def show_user(user: object, *, full: bool) -> str:
    """``str(user)``, masked when it is a phone number (unless ``full``).

    The default adapter makes a user's username the number it logged in
    with, so a user's name can be personal data too.
    """
    if user is None:
        return ""
    text = str(user)
    if full or not _looks_like_number(text):
        return text
    return mask(text)


def _looks_like_number(text: str) -> bool:
    digits = sum(char.isdigit() for char in text)
    return digits >= 7 and all(char in _NUMBER_CHARACTERS for char in text)


def mask_payload(payload: Any, *, full: bool) -> Any:
    """``payload`` with every phone number under :data:`NUMBER_KEYS` masked (unless ``full``)."""
    if full:
        return payload
    if isinstance(payload, dict):
        return {
            key: mask(str(value))
            if key in NUMBER_KEYS and isinstance(value, str | int) and value != ""
            else mask_payload(value, full=False)
            for key, value in payload.items()
        }
    if isinstance(payload, list):
        return [mask_payload(item, full=False) for item in payload]
    return payload
