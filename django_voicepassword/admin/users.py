"""A user's verified phone numbers, as an inline on the site's user admin.

The site's user admin is whatever the site registered for its user model
(Django's ``UserAdmin``, a subclass of it, or its own class). It is extended
only if it is registered on the default admin site when this module is
imported (``admin.autodiscover()`` imports the apps' ``admin`` modules in
``INSTALLED_APPS`` order, so ``django_voicepassword`` goes after the app that
registers the user admin); it is then replaced by a subclass of its own class
that adds :class:`PhoneNumberInline` to whatever inlines it returns and
refuses, like the app's own admins, filters, searches and orderings through
the user's numbers (``?voicepassword_numbers__number__startswith=``) to staff
who may not see full numbers (:class:`~.common.NumberLookups`). Nothing
happens when the user model is not registered, or is registered with the
inline already. A site that registers its user admin later, or on another
admin site, adds ``PhoneNumberInline`` to its own ``inlines``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from django_voicepassword.admin.common import NumberLookups, display_number
from django_voicepassword.admin.privacy import with_visibility
from django_voicepassword.models import Challenge, PhoneNumber

if TYPE_CHECKING:
    from django.db.models import QuerySet

    _TabularInline = admin.TabularInline[PhoneNumber, Any]
else:
    _TabularInline = admin.TabularInline

__all__ = ["PhoneNumberInline", "add_phone_numbers_to_user_admin"]


class PhoneNumberInline(_TabularInline):
    """A user's verified numbers: listed, and deletable, never added or edited by hand.

    A number is added by verifying it (a code sent to it); an admin typing one
    in would let anyone log in to the account from that phone. Deleting one
    (a lost phone) needs the ``delete_phonenumber`` permission.
    """

    model = PhoneNumber
    fields = ("number_column", "verified_at")
    readonly_fields = fields
    extra = 0
    max_num = 0
    verbose_name = _("verified phone number")
    verbose_name_plural = _("verified phone numbers")

    @admin.display(description=_("number"))
    def number_column(self, obj: PhoneNumber) -> str:
        """The number, masked unless the request may see it in full."""
        return display_number(obj, obj.number)

    def get_queryset(self, request: HttpRequest) -> QuerySet[PhoneNumber]:
        """The numbers, each carrying whether this request may see them in full."""
        return with_visibility(super().get_queryset(request), request)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Numbers are added by verifying them."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """A verified number is not edited."""
        return False


def add_phone_numbers_to_user_admin(site: admin.AdminSite | None = None) -> bool:
    """Add :class:`PhoneNumberInline` to the user admin of ``site``; return whether it did.

    The registered class is subclassed (keeping all of its behaviour, with
    :class:`~.common.NumberLookups` and the deletion of a user's challenges
    with the user) and the subclass registered in its place. On the change page only: a user being
    added has no numbers yet.
    """
    site = site or admin.site
    user_model = get_user_model()
    if not site.is_registered(user_model):
        return False
    current = site.get_model_admin(user_model)
    base = type(current)
    if getattr(base, "voicepassword_phone_numbers", False) or PhoneNumberInline in (
        current.inlines or ()
    ):
        return False

    class WithPhoneNumbers(NumberLookups, base):  # type: ignore[valid-type,misc]
        voicepassword_phone_numbers = True

        def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
            deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
            # A user's challenges go with the user (on_delete=CASCADE). The
            # challenge admin refuses every deletion of its own, which would
            # otherwise forbid deleting any user who ever asked for a code.
            challenges = str(Challenge._meta.verbose_name)
            perms_needed = {name for name in perms_needed if str(name) != challenges}
            return deleted, counts, perms_needed, protected

        def get_inlines(self, request: HttpRequest, obj: Any = None) -> list[Any]:
            inlines = list(super().get_inlines(request, obj))
            if obj is not None and PhoneNumberInline not in inlines:
                inlines.append(PhoneNumberInline)
            return inlines

    # The same name and place as the site's class: messages and checks name it.
    for attribute in ("__name__", "__qualname__", "__module__", "__doc__"):
        setattr(WithPhoneNumbers, attribute, getattr(base, attribute))
    site.unregister(user_model)
    site.register(user_model, WithPhoneNumbers)
    return True
