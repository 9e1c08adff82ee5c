"""``{% load voicepassword_admin %}``: the balance block of the admin index.

``{% voicepassword_balance %}`` renders a small block with the balance, the
low-balance warning and a link to the dashboard, for users who may see the
dashboard (``voicepassword.view_balancesnapshot``), and nothing for others.
It never asks the provider: it shows the dashboard's cached reading, or else
the last stored snapshot (one query). The app's ``admin/index.html`` and
``admin/voicepassword/app_index.html`` use it; a site with its own
``admin/index.html`` adds it there.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import NoReverseMatch, reverse

from django_voicepassword import dashboard

register = template.Library()

#: The dashboard's URL name in an admin site's namespace.
DASHBOARD_URL = "voicepassword_balancesnapshot_changelist"


@register.inclusion_tag("admin/voicepassword/balance_block.html", takes_context=True)
def voicepassword_balance(context: Any) -> dict[str, Any]:
    """The balance block's context (``show`` false: render nothing)."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.has_perm("voicepassword.view_balancesnapshot"):
        return {"show": False}
    site_name = getattr(request, "current_app", None) or "admin"
    try:
        url = reverse(f"{site_name}:{DASHBOARD_URL}")
    except NoReverseMatch:
        url = ""
    from django_voicepassword.admin.balance import problem_message
    from django_voicepassword.admin.calls import format_money

    reading = dashboard.cached_balance()
    return {
        "show": True,
        "url": url,
        "reading": reading,
        "balance": None
        if reading is None or reading.balance is None
        else format_money(reading.balance),
        "threshold": None
        if reading is None or reading.threshold is None
        else format_money(reading.threshold),
        "problem": problem_message(reading) if reading is not None else "",
    }
