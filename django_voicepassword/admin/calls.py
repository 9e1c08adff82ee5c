"""The call history in the admin: calls, their callbacks, and actions that ask the provider.

The call list is built for a table of millions of rows: its count is capped
or estimated and comes from the same single query as the totals above the
list; the date hierarchy reads the first and last date (an index lookup)
instead of every distinct year; search is an exact lookup on indexed columns;
the user of every row comes in the same query. See ``docs/admin.md``.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Callable, Iterator
from typing import Any, cast

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Max, Min, QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.utils import formats, timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import capfirst
from django.utils.translation import gettext, ngettext, ngettext_lazy
from django.utils.translation import gettext_lazy as _

from django_voicepassword import calls
from django_voicepassword.admin.changelist import CappedChangeList, CountTexts
from django_voicepassword.admin.common import (
    RecordAdmin,
    RecordInline,
    display_number,
    display_user,
    exact_search,
    month_day,
)
from django_voicepassword.admin.paginator import CappedCountPaginator
from django_voicepassword.admin.privacy import (
    can_see_full_numbers,
    mask_payload,
    show_number,
    show_user,
    shows_full_numbers,
)
from django_voicepassword.dashboard import CALL_ORDER, TOTALS_LIMIT, CallTotals, call_totals
from django_voicepassword.exceptions import (
    APIError,
    AuthorisationFailedError,
    NotEnoughMoneyError,
    OutcomeUnknownError,
    TransportError,
    UserDisabledError,
)
from django_voicepassword.models import Call, CallbackEvent

__all__ = [
    "ACTION_LIMIT",
    "CallAdmin",
    "CallChangeList",
    "CallPaginator",
    "CallbackEventAdmin",
    "status_badge",
]

#: The most calls one provider action works on: each is a request to the provider.
ACTION_LIMIT = 100

#: The badge colour of each status: done, in progress, missed, failed, unknown.
STATUS_STYLES: dict[str, str] = {
    Call.Status.ANSWERED: "ok",
    Call.Status.DELIVERED: "ok",
    Call.Status.PENDING: "progress",
    Call.Status.PLACED: "progress",
    Call.Status.DIALLING: "progress",
    Call.Status.QUEUED: "progress",
    Call.Status.SENT: "progress",
    Call.Status.BUSY: "missed",
    Call.Status.NO_ANSWER: "missed",
    Call.Status.CANCELLED: "missed",
    Call.Status.FAILED: "error",
    Call.Status.NOT_PLACED: "error",
    Call.Status.NOT_DELIVERED: "error",
    Call.Status.UNKNOWN: "unknown",
    Call.Status.REVIEW: "review",
}

#: Errors after which the rest of a batch is not tried: the provider is down,
#: the account cannot be used, or the site is not configured.
STOP_ERRORS: tuple[type[Exception], ...] = (
    TransportError,
    AuthorisationFailedError,
    UserDisabledError,
    NotEnoughMoneyError,
    ImproperlyConfigured,
)


def status_badge(status: str) -> SafeString:
    """``status`` as a coloured badge (the colour is also said in words: the label)."""
    try:
        label = str(Call.Status(status).label)
    except ValueError:
        label = status
    return format_html(
        '<span class="vp-badge vp-badge--{}">{}</span>',
        STATUS_STYLES.get(status, "unknown"),
        label,
    )


def format_money(amount: Any) -> str:
    """An amount with two decimals, grouped as the current language groups numbers."""
    return formats.number_format(amount, 2, force_grouping=True)


def format_share(share: float | None) -> str:
    """A share as a whole percentage; a dash when there is nothing to divide."""
    if share is None:
        return "—"
    return f"{formats.number_format(round(share * 100), 0)} %"


def format_duration(duration: dt.timedelta | None) -> str:
    """``m:ss``."""
    if duration is None:
        return ""
    seconds = int(duration.total_seconds())
    return f"{seconds // 60}:{seconds % 60:02d}"


def describe_error(error: Exception) -> str:
    """Why a provider action failed on one call, in words for the admin."""
    if isinstance(error, calls.SmsFallbackError):
        return str(error)
    if isinstance(error, OutcomeUnknownError):
        return gettext(
            "the provider's answer was lost, so the request may have gone through; "
            "reconciliation (voicepassword_sync) will settle it"
        )
    if isinstance(error, TransportError):
        return gettext("the provider could not be reached")
    if isinstance(error, AuthorisationFailedError):
        return gettext("the provider refused the API key")
    if isinstance(error, APIError):
        return gettext("the provider refused the request (%(code)s)") % {
            "code": error.error_code or "?"
        }
    if isinstance(error, ImproperlyConfigured):
        return gettext("the VoicePassword settings are incomplete (see manage.py check)")
    return gettext("unexpected error: %(error)s") % {"error": type(error).__name__}


# --------------------------------------------------------------------------- the list


class CallPaginator(CappedCountPaginator):
    """The call list's paginator: its count comes from the totals' query.

    :func:`~django_voicepassword.dashboard.call_totals` reads at most
    ``limit`` rows and counts them; that count is the one the paginator
    needs, so one query gives both.
    """

    limit = TOTALS_LIMIT
    totals: CallTotals | None = None

    def count_rows(self, limit: int) -> int:
        """Compute the totals and count the rows with them.

        Only for calls: the admin pages other lists (a call's history: its
        log entries) with the same paginator, and those have no totals.
        """
        object_list = self.object_list
        if not (isinstance(object_list, QuerySet) and issubclass(object_list.model, Call)):
            return super().count_rows(limit)
        self.totals = call_totals(cast("QuerySet[Call]", self.object_list), limit=limit)
        return self.totals.calls


class CallChangeList(CappedChangeList):
    """The call list, with the totals above it and a date hierarchy that scales."""

    @property
    def totals(self) -> dict[str, Any] | None:
        """The totals of the filtered calls, formatted for the template."""
        totals: CallTotals | None = getattr(self.paginator, "totals", None)
        if totals is None:
            return None
        return {
            "calls": totals.calls,
            "limited": totals.limited,
            "answered_share": format_share(totals.answered_share),
            "spend": format_money(totals.spend),
        }

    @cached_property
    def date_drilldown(self) -> dict[str, Any]:
        """The date hierarchy's links, from the first and last date of the filtered calls.

        Django's own asks the database for every distinct year, month or day,
        which reads every row in the range; the first and last date are two
        index lookups. The price: a month or day without calls between two
        with calls is listed too, and shows an empty list.
        """
        field = self.date_hierarchy
        names = {part: f"{field}__{part}" for part in ("year", "month", "day")}
        year, month, day = (
            int(value) if (value := self.params.get(name)) else None for name in names.values()
        )

        def link(filters: dict[str, Any]) -> str:
            return str(self.get_query_string(filters, [f"{field}__"]))

        label = getattr(self.opts.get_field(field), "verbose_name", field)
        if year and month and day:
            chosen = dt.date(year, month, day)
            return {
                "show": True,
                "back": {
                    "link": link({names["year"]: year, names["month"]: month}),
                    "title": capfirst(formats.date_format(chosen, "YEAR_MONTH_FORMAT")),
                },
                "choices": [{"title": month_day(chosen)}],
                "field_name": label,
            }
        bounds = self.queryset.aggregate(first=Min(field), last=Max(field))
        first, last = bounds["first"], bounds["last"]
        if first is None or last is None:
            return {"show": True, "back": None, "choices": [], "field_name": label}
        if timezone.is_aware(first):
            first, last = timezone.localtime(first), timezone.localtime(last)
        if not year and first.year == last.year:
            year = first.year
            if first.month == last.month:
                month = first.month
        if year and month:
            days = [dt.date(year, month, d) for d in range(first.day, last.day + 1)]
            return {
                "show": True,
                "back": {"link": link({names["year"]: year}), "title": str(year)},
                "choices": [
                    {
                        "link": link(
                            {names["year"]: year, names["month"]: month, names["day"]: d.day}
                        ),
                        "title": month_day(d),
                    }
                    for d in days
                ],
                "field_name": label,
            }
        if year:
            months = [dt.date(year, m, 1) for m in range(first.month, last.month + 1)]
            return {
                "show": True,
                "back": {"link": link({}), "title": gettext("All dates")},
                "choices": [
                    {
                        "link": link({names["year"]: year, names["month"]: m.month}),
                        "title": capfirst(formats.date_format(m, "YEAR_MONTH_FORMAT")),
                    }
                    for m in months
                ],
                "field_name": label,
            }
        return {
            "show": True,
            "back": None,
            "choices": [
                {"link": link({names["year"]: str(y)}), "title": str(y)}
                for y in range(first.year, last.year + 1)
            ],
            "field_name": label,
        }


# --------------------------------------------------------------------------- columns


class CallColumns:
    """Display methods shared by the call admin and the inlines that list calls."""

    @admin.display(description=_("number"))
    def number_column(self, obj: Call) -> str:
        """The number, masked unless the request may see it in full."""
        return display_number(obj, obj.number)

    @admin.display(description=_("status"), ordering="status")
    def status_column(self, obj: Call) -> SafeString:
        """The status as a coloured badge."""
        return status_badge(obj.status)

    @admin.display(description=_("price"))
    def price_column(self, obj: Call) -> str:
        """The price with two decimals."""
        return "" if obj.price is None else format_money(obj.price)

    @admin.display(description=_("duration"))
    def duration_column(self, obj: Call) -> str:
        """``m:ss``."""
        return format_duration(obj.duration)

    @admin.display(description=_("created"), ordering="created_at")
    def created_column(self, obj: Call) -> SafeString:
        """When the call was made, short ("26.11.2026 14:05"): the list's narrowest date.

        ``DATETIME_FORMAT`` spells the month and the year in full in Russian,
        which left no room for the user column at 1280 pixels. The date and the time may
        go on two lines, never break inside.
        """
        moment = timezone.localtime(obj.created_at) if timezone.is_aware(obj.created_at) else None
        value = moment or obj.created_at
        return format_html(
            '<span class="vp-nowrap">{}</span> <span class="vp-nowrap">{}</span>',
            formats.date_format(value, "SHORT_DATE_FORMAT"),
            formats.time_format(value, "TIME_FORMAT"),
        )

    @admin.display(description=_("user"))
    def user_column(self, obj: Call) -> SafeString | str:
        """The user, masked like a number when the username is one."""
        return display_user(obj, obj.user)


class SmsFallbackInline(CallColumns, RecordInline):
    """The SMS a call's code was sent by, on the call's page."""

    model = Call
    fk_name = "parent"
    verbose_name = _("SMS fallback")
    verbose_name_plural = _("SMS fallback")
    fields = ("number_column", "status_column", "state_label", "price_column", "created_at")
    readonly_fields = fields


class CallbackEventInline(RecordInline):
    """The callbacks received for a call, on the call's page."""

    model = CallbackEvent
    fk_name = "call"  # not url_call: the events about the call, not those sent to its URL
    fields = ("received_at", "state", "outcome", "remote_addr", "payload_column")
    readonly_fields = fields
    ordering = ("received_at", "id")

    @admin.display(description=_("payload"))
    def payload_column(self, obj: CallbackEvent) -> SafeString:
        """The payload as received, its phone number masked unless the request may see it."""
        return payload_html(obj)


def payload_html(obj: CallbackEvent) -> SafeString:
    """``obj``'s payload as indented JSON, masked as the request allows."""
    payload = mask_payload(obj.payload, full=shows_full_numbers(obj))
    text = json.dumps(payload, ensure_ascii=False, indent=2, sort_keys=True)
    return format_html('<pre class="vp-payload">{}</pre>', text)


# --------------------------------------------------------------------------- calls


@admin.register(Call)
class CallAdmin(CallColumns, RecordAdmin):
    """The call history: read-only, searchable by number or provider id, with totals."""

    list_display = (
        "number_column",
        "channel",
        "status_column",
        "price_column",
        "duration_column",
        "created_column",
        "user_column",
    )
    list_display_links = ("number_column",)
    count_texts = CountTexts(
        exact=ngettext_lazy("%(count)s call", "%(count)s calls", "n"),
        about=ngettext_lazy("about %(count)s call", "about %(count)s calls", "n"),
        or_more=ngettext_lazy("%(count)s or more calls", "%(count)s or more calls", "n"),
    )
    list_filter = ("status", "channel", "created_at")
    list_select_related = ("user",)
    date_hierarchy = "created_at"
    # Only the date is sortable: it has an index; sorting a million rows by
    # price would read them all.
    sortable_by = ("created_column",)
    # The search box shows when search_fields is set; get_search_results does
    # the searching (exact, normalized).
    search_fields = ("=number", "=provider_id")
    search_help_text = _(
        "A phone number in any spelling (+7 999 000-00-00, 8 999 000 00 00) or a provider id."
    )
    masked_search_help_text = _(
        "A provider id. Searching by phone number needs the permission to see full numbers."
    )
    paginator = CallPaginator
    actions = ("refresh_from_provider", "send_sms_fallback", "export_csv")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    ("number_column", "channel", "status_column"),
                    ("provider_id", "state_label", "error_code"),
                    ("callbacks_dropped",),
                )
            },
        ),
        (
            _("Cost and time"),
            {
                "fields": (
                    ("price_column", "duration_column"),
                    ("created_at", "provider_date", "updated_at"),
                )
            },
        ),
        (_("Related"), {"fields": (("user_column", "challenge", "parent"),)}),
    )
    readonly_fields = (
        "callbacks_dropped",
        "number_column",
        "channel",
        "status_column",
        "state_label",
        "error_code",
        "provider_id",
        "price_column",
        "duration_column",
        "provider_date",
        "created_at",
        "updated_at",
        "user_column",
        "challenge",
        "parent",
    )
    inlines = (SmsFallbackInline, CallbackEventInline)

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[CallChangeList]:
        """The list with totals and a date hierarchy that scales."""
        return CallChangeList

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Call], search_term: str
    ) -> tuple[QuerySet[Call], bool]:
        """Calls whose number (any spelling) or provider id equals the term exactly.

        The number only for a request that may see full numbers: to anyone
        else an exact match would confirm a guess at the hidden digits.
        """
        number_field = "number" if self.searches_numbers(request) else None
        found = exact_search(
            queryset, search_term, number_field=number_field, id_fields=("provider_id",)
        )
        return found, False

    def has_provider_permission(self, request: HttpRequest) -> bool:
        """Whether the user may ask the provider about calls and send SMS fallbacks.

        The ``change_call`` permission: nothing on a call is edited by hand, so
        "change" means acting on it through the provider.
        """
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    # -- actions -----------------------------------------------------------------

    @admin.action(description=_("Refresh state from the provider"), permissions=["provider"])
    def refresh_from_provider(
        self, request: HttpRequest, queryset: QuerySet[Call]
    ) -> HttpResponse | None:
        """Ask the provider for each call's state (``calls.refresh_call``), after confirming."""
        return self._provider_action(
            request,
            queryset,
            action="refresh_from_provider",
            title=gettext("Refresh state from the provider"),
            question=gettext(
                "Ask the provider for the state of these calls? Calls that were never "
                "placed have no provider id and are left as they are."
            ),
            run=self._refresh,
        )

    @admin.action(description=_("Send SMS fallback"), permissions=["provider"])
    def send_sms_fallback(
        self, request: HttpRequest, queryset: QuerySet[Call]
    ) -> HttpResponse | None:
        """Send each call's code by SMS (``calls.send_sms``), after confirming."""
        return self._provider_action(
            request,
            queryset,
            action="send_sms_fallback",
            title=gettext("Send SMS fallback"),
            question=gettext(
                "Send the code of each of these calls by SMS? Each SMS is paid for, "
                "costs about ten times a call, and is sent only once the provider "
                "confirms that the call has ended."
            ),
            run=self._send_sms,
        )

    @admin.action(description=_("Export selected calls as CSV"), permissions=["view"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Call]) -> StreamingHttpResponse:
        """Stream the selected calls as CSV, numbers masked unless the user may see them."""
        full = can_see_full_numbers(request)
        rows = queryset.select_related("user").order_by(*CALL_ORDER)
        response = StreamingHttpResponse(
            _csv_lines(rows, full=full), content_type="text/csv; charset=utf-8"
        )
        stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
        response["Content-Disposition"] = f'attachment; filename="calls-{stamp}.csv"'
        return response

    def _provider_action(
        self,
        request: HttpRequest,
        queryset: QuerySet[Call],
        *,
        action: str,
        title: str,
        question: str,
        run: Callable[[HttpRequest, list[Call]], None],
    ) -> HttpResponse | None:
        """Confirm, then run ``run`` on the selected calls (at most :data:`ACTION_LIMIT`)."""
        selected = list(queryset.select_related("user").order_by(*CALL_ORDER)[: ACTION_LIMIT + 1])
        if len(selected) > ACTION_LIMIT:
            self.message_user(
                request,
                ngettext(
                    "Select at most %(limit)d call: each one is a request to the provider.",
                    "Select at most %(limit)d calls: each one is a request to the provider.",
                    ACTION_LIMIT,
                )
                % {"limit": ACTION_LIMIT},
                messages.ERROR,
            )
            return None
        if request.POST.get("post") == "yes":
            run(request, selected)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "subtitle": None,
            "question": question,
            "calls": [
                {
                    "pk": call.pk,
                    "label": show_number(call.number, full=shows_full_numbers(call)),
                    "channel": call.get_channel_display(),
                    "status": status_badge(call.status),
                    "created_at": call.created_at,
                }
                for call in selected
            ],
            "action": action,
            "opts": self.opts,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(
            request, "admin/voicepassword/call/action_confirmation.html", context
        )

    def _call_label(self, call: Call) -> str:
        number = show_number(call.number, full=shows_full_numbers(call))
        return gettext("call %(id)s to %(number)s") % {"id": call.pk, "number": number}

    def _report_error(self, request: HttpRequest, call: Call, error: Exception) -> None:
        self.message_user(
            request,
            gettext("%(call)s: %(reason)s.")
            % {"call": self._call_label(call), "reason": describe_error(error)},
            messages.ERROR,
        )

    def _report_stopped(self, request: HttpRequest, left: int) -> None:
        if left:
            self.message_user(
                request,
                ngettext(
                    "Stopped: %(count)d more call was not tried.",
                    "Stopped: %(count)d more calls were not tried.",
                    left,
                )
                % {"count": left},
                messages.WARNING,
            )

    def _refresh(self, request: HttpRequest, selected: list[Call]) -> None:
        asked = changed = 0
        skipped = 0
        for index, call in enumerate(selected):
            if not call.provider_id:
                skipped += 1
                continue
            before = call.status
            try:
                calls.refresh_call(call)
            except STOP_ERRORS as error:
                self._report_error(request, call, error)
                self._report_stopped(request, len(selected) - index - 1)
                break
            except APIError as error:
                self._report_error(request, call, error)
                continue
            asked += 1
            changed += call.status != before
        if asked:
            self.message_user(
                request,
                ngettext(
                    "Asked the provider about %(count)d call; %(changed)d changed status.",
                    "Asked the provider about %(count)d calls; %(changed)d changed status.",
                    asked,
                )
                % {"count": asked, "changed": changed},
                messages.SUCCESS,
            )
        if skipped:
            self.message_user(
                request,
                ngettext(
                    "%(count)d call has no provider id (never placed, or its outcome is "
                    "unknown) and was left for reconciliation.",
                    "%(count)d calls have no provider id (never placed, or their outcome is "
                    "unknown) and were left for reconciliation.",
                    skipped,
                )
                % {"count": skipped},
                messages.WARNING,
            )

    def _send_sms(self, request: HttpRequest, selected: list[Call]) -> None:
        sent = 0
        for index, call in enumerate(selected):
            try:
                sms = calls.send_sms(call, user=call.user)
            except calls.SmsFallbackError as error:
                self._report_error(request, call, error)
                continue
            except STOP_ERRORS as error:
                self._report_error(request, call, error)
                self._report_stopped(request, len(selected) - index - 1)
                break
            except APIError as error:
                self._report_error(request, call, error)
                continue
            sent += 1
            # The SMS is written by the service; the admin's history says who sent it.
            self.log_change(
                request, call, [{"added": {"name": "SMS fallback", "object": str(sms)}}]
            )
        if sent:
            self.message_user(
                request,
                ngettext("Sent %(count)d SMS fallback.", "Sent %(count)d SMS fallbacks.", sent)
                % {"count": sent},
                messages.SUCCESS,
            )


class _Echo:
    """A file-like object whose ``write`` returns the line (for a streamed CSV)."""

    def write(self, value: str) -> str:
        return value


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    """A CSV cell that a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _csv_lines(rows: QuerySet[Call], *, full: bool) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(
        [
            gettext("id"),
            gettext("created"),
            gettext("provider id"),
            gettext("channel"),
            gettext("number"),
            gettext("status"),
            gettext("provider state"),
            gettext("error code"),
            gettext("price"),
            gettext("duration, seconds"),
            gettext("provider date"),
            gettext("parent call"),
            gettext("user"),
        ]
    )
    for call in rows.iterator(chunk_size=2000):
        number = call.number if full else show_number(call.number, full=False)
        yield writer.writerow(
            [
                _cell(value)
                for value in (
                    call.pk,
                    timezone.localtime(call.created_at).isoformat(),
                    call.provider_id,
                    call.channel,
                    number,
                    call.status,
                    call.state_label,
                    call.error_code,
                    call.price,
                    "" if call.duration is None else int(call.duration.total_seconds()),
                    call.provider_date and timezone.localtime(call.provider_date).isoformat(),
                    call.parent_id,
                    show_user(call.user, full=full),
                )
            ]
        )


# --------------------------------------------------------------------------- callbacks


@admin.register(CallbackEvent)
class CallbackEventAdmin(RecordAdmin):
    """Every callback received, as received: read-only, filterable by outcome."""

    list_display = ("received_at", "provider_id", "state", "outcome", "call", "remote_addr")
    count_texts = CountTexts(
        exact=ngettext_lazy("%(count)s callback event", "%(count)s callback events", "n"),
        about=ngettext_lazy(
            "about %(count)s callback event", "about %(count)s callback events", "n"
        ),
        or_more=ngettext_lazy(
            "%(count)s or more callback events", "%(count)s or more callback events", "n"
        ),
    )
    list_filter = ("outcome",)
    list_select_related = ("call",)
    search_fields = ("=provider_id",)
    search_help_text = _("A provider id.")
    sortable_by = ("received_at",)
    fields = (
        "received_at",
        "provider_id",
        "state",
        "outcome",
        "call",
        "remote_addr",
        "payload_column",
    )
    readonly_fields = fields

    @admin.display(description=_("payload"))
    def payload_column(self, obj: CallbackEvent) -> SafeString:
        """The payload as received, its phone number masked unless the request may see it."""
        return payload_html(obj)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[CallbackEvent], search_term: str
    ) -> tuple[QuerySet[CallbackEvent], bool]:
        """Callbacks whose provider id equals the term exactly."""
        return exact_search(queryset, search_term, id_fields=("provider_id",)), False
