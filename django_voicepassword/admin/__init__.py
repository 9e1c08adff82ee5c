"""The app's admin: call history, callbacks, challenges, the balance dashboard.

Importing this package (``admin.autodiscover()`` does) registers, on the
default admin site:

* :class:`~.calls.CallAdmin`: the call history, with totals, provider actions
  and a CSV export;
* :class:`~.calls.CallbackEventAdmin` and :class:`~.challenges.ChallengeAdmin`:
  read-only records;
* :class:`~.balance.BalanceDashboardAdmin`: the balance dashboard, at the
  balance snapshots' address;
* :class:`~.fraud.PrefixBlockAdmin`: the fraud guard's blocked prefixes,
  their evidence and the allow-list;

adds :class:`~.users.PhoneNumberInline` to the user admin if one is
registered (see :mod:`.users`), and shows the balance on the admin index
(:func:`use_index_template`). Phone numbers are shown in full only to staff
with ``voicepassword.view_full_number`` (see :mod:`.privacy`). ``docs/admin.md``
describes it all.
"""

from __future__ import annotations

from django.contrib import admin

from django_voicepassword.admin.balance import BalanceDashboardAdmin
from django_voicepassword.admin.calls import CallAdmin, CallbackEventAdmin
from django_voicepassword.admin.challenges import ChallengeAdmin
from django_voicepassword.admin.fraud import PrefixBlockAdmin
from django_voicepassword.admin.users import PhoneNumberInline, add_phone_numbers_to_user_admin

__all__ = [
    "BalanceDashboardAdmin",
    "CallAdmin",
    "CallbackEventAdmin",
    "ChallengeAdmin",
    "PhoneNumberInline",
    "PrefixBlockAdmin",
    "add_phone_numbers_to_user_admin",
    "use_index_template",
]

#: The admin index with the balance block; it extends the site's admin/index.html.
INDEX_TEMPLATE = "admin/voicepassword/index.html"


def use_index_template(site: admin.AdminSite | None = None) -> bool:
    """Show the balance block on ``site``'s index; return whether it was set.

    Sets ``site.index_template`` only when the site has none: a site that
    chose its own index template keeps it (and may put
    ``{% voicepassword_balance %}`` in it). The template extends
    ``admin/index.html``, so a site's override of that template still applies.
    """
    site = site or admin.site
    if site.index_template is not None:
        return False
    site.index_template = INDEX_TEMPLATE
    return True


add_phone_numbers_to_user_admin()
use_index_template()
