"""The balance dashboard: a page of the admin, at the balance snapshots' address.

``/admin/voicepassword/balancesnapshot/`` shows the live balance (asked from
the provider at most every 30 seconds, or at once with the refresh button),
the low-balance warning, the stored balance of the last 30 days, and the
spend, answered share and statuses of the last 30 days' calls, as SVG charts
drawn here. The app's admin index links it as "Balance snapshots"; seeing it
needs the ``view_balancesnapshot`` permission, and the call charts also
``view_call``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import formats
from django.utils.translation import gettext, ngettext

from django_voicepassword import dashboard
from django_voicepassword.admin import charts
from django_voicepassword.admin.calls import STATUS_STYLES, format_money, format_share
from django_voicepassword.admin.common import STYLESHEET, month_day
from django_voicepassword.models import BalanceSnapshot

if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[BalanceSnapshot]
else:
    _ModelAdmin = admin.ModelAdmin

__all__ = ["BalanceDashboardAdmin", "problem_message"]


def problem_message(reading: dashboard.BalanceReading) -> str:
    """Why the provider gave no balance, in words for the admin ("" when it did)."""
    if reading.problem == "unreachable":
        return gettext(
            "VoicePassword could not be reached (a network error, an HTTP 5xx or an "
            "answer that is not JSON). Try again in a minute; if it lasts, check the "
            "API_URL setting and the provider's status."
        )
    if reading.problem == "unauthorised":
        return gettext(
            "VoicePassword refused the API key. Check VOICEPASSWORD['API_KEY'] against "
            "Settings → API in the provider's account."
        )
    if reading.problem == "refused":
        return gettext("VoicePassword refused the request (%(code)s).") % {
            "code": reading.error_code or "?"
        }
    if reading.problem == "misconfigured":
        return gettext(
            "The VoicePassword settings are incomplete: run manage.py check to see "
            "what is missing."
        )
    return ""


def _amount(value: Any) -> float:
    return float(value)


def _axis_amount(value: float, decimals: int) -> str:
    return formats.number_format(value, decimals, force_grouping=True)


@admin.register(BalanceSnapshot)
class BalanceDashboardAdmin(_ModelAdmin):
    """The balance snapshots' admin is the balance dashboard; snapshots are never edited."""

    dashboard_template = "admin/voicepassword/balance_dashboard.html"

    class Media:
        css = {"all": (STYLESHEET,)}

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Snapshots are stored by asking the provider (the refresh button)."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Snapshots are never edited."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Snapshots are removed by the retention policy (``voicepassword_purge``) only."""
        return False

    def get_urls(self) -> list[URLPattern]:
        """The dashboard instead of the change list, and its refresh button's target."""
        info = (self.opts.app_label, self.opts.model_name)
        return [
            path(
                "",
                self.admin_site.admin_view(self.dashboard_view),
                name="{}_{}_changelist".format(*info),
            ),
            path(
                "refresh/",
                self.admin_site.admin_view(self.refresh_view),
                name="{}_{}_refresh".format(*info),
            ),
        ]

    def _url(self, name: str) -> str:
        info = (self.admin_site.name, self.opts.app_label, self.opts.model_name, name)
        return reverse("{}:{}_{}_{}".format(*info))

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        """The dashboard (GET)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        reading = dashboard.current_balance()
        history = dashboard.balance_history()
        threshold = reading.threshold
        balance_chart = charts.line_chart(
            [
                charts.Point(
                    label=month_day(day.day),
                    value=None if day.low is None else _amount(day.low),
                    title=gettext("%(day)s: lowest %(low)s, highest %(high)s")
                    % {
                        "day": formats.date_format(day.day, "DATE_FORMAT"),
                        "low": format_money(day.low),
                        "high": format_money(day.high),
                    },
                )
                for day in history
            ],
            title=gettext("Lowest balance of each day, last 30 days"),
            value_label=_axis_amount,
            threshold=None if threshold is None else _amount(threshold),
            threshold_title=gettext("Low-balance threshold: %(amount)s")
            % {"amount": format_money(threshold) if threshold is not None else ""},
            css="vp-chart--balance",
        )
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": gettext("Balance"),
            "subtitle": None,
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "media": self.media,
            "reading": reading,
            "balance": None if reading.balance is None else format_money(reading.balance),
            "threshold": None if threshold is None else format_money(threshold),
            "problem": problem_message(reading),
            "cache_seconds": dashboard.BALANCE_CACHE_SECONDS,
            "refresh_url": self._url("refresh"),
            "balance_chart": balance_chart,
            "has_history": any(day.low is not None for day in history),
            "snapshots": [
                {
                    "taken_at": s.taken_at,
                    "balance": format_money(s.balance),
                    "currency": s.currency,
                }
                for s in dashboard.latest_snapshots()
            ],
            "days": dashboard.DASHBOARD_DAYS,
        }
        if request.user.has_perm("voicepassword.view_call"):
            context.update(self._call_charts())
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.dashboard_template, context)

    def _call_charts(self) -> dict[str, Any]:
        stats = dashboard.call_stats()
        spend = charts.bar_chart(
            [
                charts.Bar(
                    label=month_day(day.day),
                    value=_amount(day.spend),
                    title=ngettext(
                        "%(day)s: %(spend)s for %(calls)s call",
                        "%(day)s: %(spend)s for %(calls)s calls",
                        day.calls,
                    )
                    % {
                        "day": formats.date_format(day.day, "DATE_FORMAT"),
                        "spend": format_money(day.spend),
                        "calls": formats.number_format(day.calls, 0, force_grouping=True),
                    },
                )
                for day in stats.days
            ],
            title=gettext("Spend per day, last 30 days"),
            value_label=_axis_amount,
            css="vp-chart--spend",
        )
        answered = charts.bar_chart(
            [
                charts.Bar(
                    label=month_day(day.day),
                    value=None if day.answered_share is None else day.answered_share * 100,
                    title=ngettext(
                        "%(day)s: %(share)s of %(calls)s flash or voice call answered",
                        "%(day)s: %(share)s of %(calls)s flash and voice calls answered",
                        day.answerable,
                    )
                    % {
                        "day": formats.date_format(day.day, "DATE_FORMAT"),
                        "share": format_share(day.answered_share),
                        "calls": formats.number_format(day.answerable, 0, force_grouping=True),
                    },
                )
                for day in stats.days
            ],
            title=gettext("Answered share per day, last 30 days"),
            value_label=lambda value, _decimals: f"{value:.0f} %",
            maximum=100.0,
            css="vp-chart--answered",
        )
        statuses = charts.hbar_chart(
            [
                (str(status.label), count, f"vp-badge--{STATUS_STYLES.get(status, 'unknown')}")
                for status, count in stats.by_status
            ],
            title=gettext("Calls by status, last 30 days"),
        )
        return {
            "stats": stats,
            "stats_calls": formats.number_format(stats.calls, 0, force_grouping=True),
            "stats_spend": format_money(stats.spend),
            "stats_answered": format_share(stats.answered_share),
            "spend_chart": spend,
            "answered_chart": answered,
            "status_chart": statuses,
            "status_count": len(stats.by_status),
        }

    def refresh_view(self, request: HttpRequest) -> HttpResponse:
        """Ask the provider now, store the answer, and go back to the dashboard (POST)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_view_permission(request):
            raise PermissionDenied
        reading = dashboard.current_balance(refresh=True)
        if reading.live:
            self.message_user(
                request,
                gettext("Balance refreshed: %(balance)s %(currency)s.")
                % {"balance": format_money(reading.balance), "currency": reading.currency},
                messages.SUCCESS,
            )
        else:
            self.message_user(request, problem_message(reading), messages.ERROR)
        return HttpResponseRedirect(self._url("changelist"))
