"""How phone numbers map to users: the hooks a site overrides.

The ``ADAPTER`` setting names the class (like allauth's adapters). The
default, :class:`PhoneAdapter`, keeps verified numbers in
:class:`~django_voicepassword.models.PhoneNumber`; :class:`UserFieldAdapter`
reads a phone field on a custom user model instead (``USER_PHONE_FIELD``).
Numbers given to an adapter are always normalized (``phone.normalize``).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, connections, router, transaction
from django.utils import timezone

from django_voicepassword.conf import ConfigurationError, settings
from django_voicepassword.models import PhoneNumber

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.http import HttpRequest

__all__ = ["PhoneAdapter", "UserFieldAdapter", "get_adapter"]


def _user_by_number_sql(alias: str) -> str:
    """``SELECT`` the user model's row of the user whose verified number is ``%s``."""
    quote = connections[alias].ops.quote_name
    users, numbers = get_user_model()._meta, PhoneNumber._meta
    user_id, number = numbers.get_field("user").column, numbers.get_field("number").column
    user_pk = users.pk.column if users.pk is not None else None
    assert user_id is not None
    assert number is not None
    assert user_pk is not None
    return (
        f"SELECT u.* FROM {quote(numbers.db_table)} p"  # noqa: S608 (names from the models)
        f" JOIN {quote(users.db_table)} u ON u.{quote(user_pk)} = p.{quote(user_id)}"
        f" WHERE p.{quote(number)} = %s"
    )


class PhoneAdapter:
    """Finds users by verified :class:`PhoneNumber`, and records new ones there."""

    def get_user(self, number: str) -> AbstractBaseUser | None:
        """The user who verified ``number``, or ``None``."""
        model = get_user_model()
        alias = router.db_for_read(PhoneNumber)
        if router.db_for_read(model) != alias:
            found = PhoneNumber.objects.select_related("user").filter(number=number).first()
            return found.user if found is not None else None
        # One row at most (the number is unique), read straight into the user
        # model: every login start asks, and the ORM's query took four times
        # as long to build as the database took to answer.
        users = model._default_manager.raw(_user_by_number_sql(alias), [number]).using(alias)
        return next(iter(users), None)

    def can_log_in(self, user: AbstractBaseUser) -> bool:
        """Whether ``user`` may log in (Django's rule: active users only)."""
        return bool(getattr(user, "is_active", True))

    def create_user(self, number: str, request: HttpRequest | None) -> AbstractBaseUser:
        """Create the user of a first login by ``number`` (only with ``CREATE_USERS``).

        The default makes a user with an unusable password and a random
        username (``phone-`` and 12 hex digits), and records the number as
        verified. Not the number itself as the username: usernames are shown
        in many places (the admin, logs, other apps) that do not mask numbers.
        """
        model = get_user_model()
        with transaction.atomic():
            user = model._default_manager.create_user(
                **{model.USERNAME_FIELD: f"phone-{secrets.token_hex(6)}"}, password=None
            )
            self.mark_verified(user, number)
        return user

    def mark_verified(self, user: AbstractBaseUser, number: str) -> None:
        """Record that ``user`` proved they receive calls at ``number``.

        A number belongs to one user: verifying it moves it from whoever had it
        (numbers are recycled by operators).
        """
        # One UPDATE for a number already recorded (every login by a known
        # number re-verifies it): no savepoints, no SELECT ... FOR UPDATE.
        now = timezone.now()
        if PhoneNumber.objects.filter(number=number).update(user_id=user.pk, verified_at=now):
            return
        try:
            with transaction.atomic():
                PhoneNumber.objects.create(number=number, user_id=user.pk, verified_at=now)
        except IntegrityError:
            # Two verifications of one number at once: the other one won.
            PhoneNumber.objects.filter(number=number).update(user_id=user.pk, verified_at=now)


class UserFieldAdapter(PhoneAdapter):
    """Reads the number from a field of the user model (``USER_PHONE_FIELD``).

    The field must hold numbers in the provider's form (``phone.normalize``)
    and should be unique.
    """

    @property
    def field(self) -> str:
        """The field's name, from the settings."""
        name = settings.USER_PHONE_FIELD
        if not name:
            raise ConfigurationError(
                "UserFieldAdapter needs VOICEPASSWORD['USER_PHONE_FIELD']: the user "
                "model's field that holds the phone number."
            )
        return name

    def get_user(self, number: str) -> AbstractBaseUser | None:
        """The user whose phone field is ``number``, or ``None``."""
        model = get_user_model()
        return model._default_manager.filter(**{self.field: number}).first()

    def create_user(self, number: str, request: HttpRequest | None) -> AbstractBaseUser:
        """Create a user with the number in its phone field."""
        model = get_user_model()
        fields: dict[str, Any] = {self.field: number}
        if self.field != model.USERNAME_FIELD:
            fields[model.USERNAME_FIELD] = number
        return model._default_manager.create_user(**fields, password=None)

    def mark_verified(self, user: AbstractBaseUser, number: str) -> None:
        """Write the number into the user's phone field, taking it from whoever had it.

        Operators recycle numbers: the proof of today wins over an old one,
        as with :class:`PhoneAdapter`. The field should be ``null=True`` (then
        the previous holder's becomes ``None``) and unique.
        """
        model = get_user_model()
        field = model._meta.get_field(self.field)
        emptied = None if field.null else ""
        with transaction.atomic():
            model._default_manager.filter(**{self.field: number}).exclude(pk=user.pk).update(
                **{self.field: emptied}
            )
            setattr(user, self.field, number)
            user.save(update_fields=[self.field])


def get_adapter() -> PhoneAdapter:
    """An instance of the adapter the ``ADAPTER`` setting names."""
    adapter = settings.ADAPTER()
    if not isinstance(adapter, PhoneAdapter):
        raise ConfigurationError(
            "VOICEPASSWORD['ADAPTER'] must name a subclass of "
            "django_voicepassword.adapter.PhoneAdapter."
        )
    return adapter
