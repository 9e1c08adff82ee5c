"""Who sees full phone numbers in the admin, and how everybody else sees them.

Full numbers are shown only to active staff with the
``voicepassword.view_full_number`` permission; everyone else gets
:func:`~django_voicepassword.phone.mask`'s form everywhere the admin shows a
number: lists, detail pages, search results, exports, callback payloads.

Showing a number masked is half of it: a staff member who may not see a
number must not get its hidden digits back by asking the admin to compare
them either (``?number__startswith=7999000004`` narrows a list one digit at a
time). :func:`reads_number` tells which filter, search, ordering or
``_to_field`` path reads a number (:data:`NUMBER_FIELDS`), and
:class:`~django_voicepassword.admin.common.NumberLookups` refuses those paths
to such a staff member.

Django calls a ``ModelAdmin``'s display methods with the object alone, without
the request, and one ``ModelAdmin`` serves every request (and thread). So the
decision is taken once per request, in ``get_queryset(request)``, and travels
with the rows as a constant annotation (:data:`VISIBILITY`): a display method
reads it from the object. A row that did not come through ``get_queryset``
has no annotation and is masked: the safe default.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist
from django.db.models import BooleanField, F, Model, QuerySet, Value
from django.db.models.constants import LOOKUP_SEP
from django.db.models.expressions import BaseExpression
from django.http import HttpRequest

from django_voicepassword.phone import InvalidPhoneNumber, format_international, mask

__all__ = [
    "FULL_NUMBER_PERMISSION",
    "NUMBER_FIELDS",
    "NUMBER_KEYS",
    "VISIBILITY",
    "can_see_full_numbers",
    "mask_payload",
    "orders_by_number",
    "reads_number",
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


#: The fields that hold a phone number, as ``app_label.Model.field``. A callback's
#: payload holds the subscriber's number and the caller id under keys of the
#: provider's choosing, so the whole payload counts as a number.
NUMBER_FIELDS = frozenset(
    {
        "voicepassword.Call.number",
        "voicepassword.Challenge.number",
        "voicepassword.PhoneNumber.number",
        "voicepassword.CallbackEvent.payload",
    }
)


def can_see_full_numbers(request: HttpRequest) -> bool:
    """Whether the request's user may see full phone numbers."""
    user = getattr(request, "user", None)
    return bool(
        user is not None
        and user.is_active
        and user.is_staff
        and user.has_perm(FULL_NUMBER_PERMISSION)
    )


def _holds_number(field: Any, *, through_relation: bool) -> bool:
    if not getattr(field, "concrete", False):
        return False
    label = f"{field.model._meta.label}.{field.name}"
    if label in NUMBER_FIELDS:
        return True
    # A username may be a phone number (show_user masks one); reached from
    # a record (``user__username__startswith``) it is read like one. The
    # site's own user admin, where it is a local field, is left alone.
    user_model = get_user_model()
    return (
        through_relation
        and field.model._meta.concrete_model is user_model._meta.concrete_model
        and field.name == user_model.USERNAME_FIELD
    )


def reads_number(model: type[Model], path: str) -> bool:
    """Whether the lookup ``path`` from ``model`` compares a phone number's digits.

    ``path`` is a filter, search or ordering path as the admin takes it
    (``number__startswith``, ``challenge__number``, ``payload__ani``,
    ``user__voicepassword_numbers__number__gt``), followed through relations
    in either direction. Any lookup or transform on a number reads it, even
    ``exact`` or ``length`` (each answer confirms a guess); only ``isnull``
    does not. A path that names no field reads nothing here (Django reports
    it as the bad lookup it is).
    """
    parts = path.split(LOOKUP_SEP)
    for depth, part in enumerate(parts):
        try:
            field = model._meta.get_field(part)
        except FieldDoesNotExist:
            return False
        if _holds_number(field, through_relation=depth > 0):
            # ``isnull`` compares nothing: it says whether there is a number.
            return parts[depth + 1 :] != ["isnull"]
        related = field.related_model if field.is_relation else None
        if related is None or isinstance(related, str):
            return False
        model = related
    return False


def orders_by_number(model: type[Model], item: Any) -> bool:
    """Whether the ordering ``item`` (a name, ``-name`` or expression) sorts by a number.

    Sorting by a number leaks it as surely as filtering: the masked rows come
    out in the order of their hidden digits.
    """
    if isinstance(item, str):
        return item != "?" and reads_number(model, item.removeprefix("-"))
    parts: list[Any] = [item]
    if isinstance(item, BaseExpression):
        # flatten() yields the expression and all it is made of, F() included.
        parts = list(item.flatten())
    names = [str(getattr(part, "name", "")) for part in parts if isinstance(part, F)]
    return any(reads_number(model, name) for name in names)


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
