"""The insights page: what a confirmed challenge costs, per day, channel, country, operator.

``/admin/voicepassword/challenge/insights/`` (linked from the challenge list)
shows the funnel of :mod:`django_voicepassword.insights` for the last 7, 30 or
90 days, narrowed to a channel or a purpose if asked, as figures, SVG charts
(the balance dashboard's, :mod:`.charts`) and tables; ``insights/csv/`` gives
the same per day and channel as CSV. Seeing either needs the permission to
view challenges. Numbers appear only as prefixes of :data:`PREFIX_DIGITS`
digits, never more than a masked number shows, whatever the permissions.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django import forms
from django.core.exceptions import PermissionDenied
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import formats, timezone
from django.utils.html import escape
from django.utils.translation import get_language, gettext, ngettext
from django.utils.translation import gettext_lazy as _

from django_voicepassword import insights as data
from django_voicepassword.admin import charts
from django_voicepassword.admin.calls import format_money, format_share
from django_voicepassword.admin.common import month_day
from django_voicepassword.models import Call, Challenge

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

    _Base = ModelAdmin[Challenge]
else:
    _Base = object

__all__ = ["InsightsFilter", "InsightsMixin", "alerts", "prefix_label"]

#: The period shown when none is asked, in days.
DEFAULT_PERIOD = 30
#: Today's conversion below this share of the period's is reported as a problem.
ALERT_SHARE = 0.5
#: ... once today has at least this many challenges (fewer say nothing).
ALERT_MINIMUM = 20


class InsightsFilter(forms.Form):
    """The page's choices; anything else in the query string is a 400."""

    period = forms.ChoiceField(
        label=_("period"),
        choices=[(str(days), str(days)) for days in data.PERIODS],
        required=False,
    )
    channel = forms.ChoiceField(
        label=_("channel"), choices=[("", _("all")), *Call.Channel.choices], required=False
    )
    purpose = forms.ChoiceField(
        label=_("purpose"), choices=[("", _("all")), *Challenge.Purpose.choices], required=False
    )


def prefix_label(prefix: str) -> str:
    """A prefix as shown: "+7 999…" (its digits only: never a whole number)."""
    return f"+{prefix[:1]} {prefix[1:]}…" if prefix.startswith("7") else f"+{prefix}…"


def alerts(result: data.Insights) -> list[str]:
    """What looks wrong today, in words: today's conversion far below the period's."""
    days = result.by_day()
    if not days:
        return []
    today = days[-1][1]
    total = result.total
    problems = []
    if (
        today.started >= ALERT_MINIMUM
        and total.confirmed_share
        and (today.confirmed_share or 0.0) < ALERT_SHARE * total.confirmed_share
    ):
        problems.append(
            gettext(
                "Today %(today)s of challenges were confirmed, against %(period)s over the "
                "period: check the channel's delivery and the provider's status."
            )
            % {
                "today": format_share(today.confirmed_share),
                "period": format_share(total.confirmed_share),
            }
        )
    return problems


def _duration(value: Any) -> str:
    if value is None:
        return "—"
    seconds = value.total_seconds()
    return gettext("%(seconds)s s") % {"seconds": formats.number_format(seconds, 1)}


def _money(value: Decimal | None) -> str:
    return "—" if value is None else format_money(value)


def _language() -> str:
    return "ru" if (get_language() or "en").startswith("ru") else "en"


def _funnel_row(label: str, funnel: data.Funnel) -> dict[str, Any]:
    return {
        "label": label,
        "started": funnel.started,
        "sent": funnel.sent,
        "reached": funnel.reached,
        "confirmed": funnel.confirmed,
        "conversion": format_share(funnel.confirmed_share),
        "spend": format_money(funnel.spend),
        "cost": _money(funnel.cost_per_confirmed),
    }


class InsightsMixin(_Base):
    """Adds the insights page and its CSV to the challenge admin."""

    insights_template = "admin/voicepassword/insights.html"

    def get_urls(self) -> list[URLPattern]:
        """The insights page and its CSV before the model admin's own URLs."""
        info = (self.opts.app_label, self.opts.model_name)
        return [
            path(
                "insights/",
                self.admin_site.admin_view(self.insights_view),
                name="{}_{}_insights".format(*info),
            ),
            path(
                "insights/csv/",
                self.admin_site.admin_view(self.insights_csv_view),
                name="{}_{}_insights_csv".format(*info),
            ),
            *super().get_urls(),
        ]

    def _insights(self, request: HttpRequest) -> tuple[data.Insights | None, InsightsFilter]:
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = InsightsFilter(request.GET)
        if not form.is_valid():
            return None, form
        result = data.insights(
            int(form.cleaned_data["period"] or DEFAULT_PERIOD),
            channel=form.cleaned_data["channel"],
            purpose=form.cleaned_data["purpose"],
            language=_language(),
        )
        return result, form

    @staticmethod
    def _bad_request(form: InsightsFilter) -> HttpResponse:
        fields = ", ".join(sorted(form.errors))
        return HttpResponseBadRequest(
            escape(gettext("Unknown choice for: %(fields)s.") % {"fields": fields}),
            content_type="text/plain; charset=utf-8",
        )

    def insights_view(self, request: HttpRequest) -> HttpResponse:
        """The insights page (GET)."""
        result, form = self._insights(request)
        if result is None:
            return self._bad_request(form)
        choices = form.cleaned_data
        total = result.total
        days = result.by_day()
        conversion = charts.bar_chart(
            [
                charts.Bar(
                    label=month_day(day),
                    value=None if funnel.confirmed_share is None else funnel.confirmed_share * 100,
                    title=ngettext(
                        "%(day)s: %(share)s of %(started)s challenge confirmed",
                        "%(day)s: %(share)s of %(started)s challenges confirmed",
                        funnel.started,
                    )
                    % {
                        "day": formats.date_format(day, "DATE_FORMAT"),
                        "share": format_share(funnel.confirmed_share),
                        "started": formats.number_format(funnel.started, 0, force_grouping=True),
                    },
                )
                for day, funnel in days
            ],
            title=gettext("Confirmed share per day"),
            value_label=lambda value, _decimals: f"{value:.0f} %",
            maximum=100.0,
            css="vp-chart--answered",
        )
        cost = charts.bar_chart(
            [
                charts.Bar(
                    label=month_day(day),
                    value=None
                    if funnel.cost_per_confirmed is None
                    else float(funnel.cost_per_confirmed),
                    title=gettext("%(day)s: %(cost)s per confirmed challenge")
                    % {
                        "day": formats.date_format(day, "DATE_FORMAT"),
                        "cost": _money(funnel.cost_per_confirmed),
                    },
                )
                for day, funnel in days
            ],
            title=gettext("Cost per confirmed challenge per day"),
            value_label=lambda value, decimals: formats.number_format(value, decimals),
            css="vp-chart--spend",
        )
        steps = charts.hbar_chart(
            [
                (gettext("started"), total.started, "vp-badge--unknown"),
                (gettext("code sent"), total.sent, "vp-badge--progress"),
                (gettext("answered or delivered"), total.reached, "vp-badge--ok"),
                (gettext("confirmed"), total.confirmed, "vp-badge--ok"),
            ],
            title=gettext("Funnel"),
        )
        channels = result.by_channel()
        unknown = gettext("unknown")
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": gettext("Insights"),
            "subtitle": None,
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "media": self.media,
            "form": form,
            "period": int(choices["period"] or DEFAULT_PERIOD),
            "periods": data.PERIODS,
            "total": _funnel_row(gettext("all"), total),
            "sent_share": format_share(total.sent_share),
            "reached_share": format_share(total.reached_share),
            "median": _duration(result.timing.median),
            "p95": _duration(result.timing.p95),
            "sampled": result.sampled,
            "sample": formats.number_format(data.DURATION_SAMPLE, 0, force_grouping=True),
            "alerts": alerts(result),
            "conversion_chart": conversion,
            "cost_chart": cost,
            "funnel_chart": steps,
            "channels": [
                {
                    **_funnel_row(str(Call.Channel(name).label), funnel),
                    "median": _duration(result.timing_by_channel.get(name, data.Timing()).median),
                    "p95": _duration(result.timing_by_channel.get(name, data.Timing()).p95),
                }
                for name, funnel in channels.items()
            ],
            "countries": [
                _funnel_row(name or unknown, funnel) for name, funnel in result.by_country()
            ],
            "operators": [
                _funnel_row(name or unknown, funnel) for name, funnel in result.by_operator()
            ],
            "prefixes": [
                {**_funnel_row(prefix_label(row.prefix), row.funnel), "operator": row.operator}
                for row in result.prefixes
            ],
            "csv_url": reverse(
                f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_insights_csv"
            )
            + "?"
            + request.GET.urlencode(),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.insights_template, context)

    def insights_csv_view(self, request: HttpRequest) -> HttpResponseBase:
        """The funnel per day and channel, as CSV (GET)."""
        result, form = self._insights(request)
        if result is None:
            return self._bad_request(form)
        response = StreamingHttpResponse(
            _csv_lines(result), content_type="text/csv; charset=utf-8"
        )
        stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
        response["Content-Disposition"] = f'attachment; filename="insights-{stamp}.csv"'
        return response


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_lines(result: data.Insights) -> Iterator[str]:
    # Every cell is a date, a channel value or a number: nothing a spreadsheet
    # could read as a formula.
    writer = csv.writer(_Echo())
    yield writer.writerow(
        [
            gettext("day"),
            gettext("channel"),
            gettext("started"),
            gettext("code sent"),
            gettext("answered or delivered"),
            gettext("confirmed"),
            gettext("spend"),
            gettext("cost per confirmed"),
        ]
    )
    for (day, channel), funnel in sorted(result.cells.items()):
        cost = funnel.cost_per_confirmed
        yield writer.writerow(
            [
                day.isoformat(),
                channel,
                funnel.started,
                funnel.sent,
                funnel.reached,
                funnel.confirmed,
                f"{funnel.spend:.2f}",
                "" if cost is None else f"{cost:.2f}",
            ]
        )
