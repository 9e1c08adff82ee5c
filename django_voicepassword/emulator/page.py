"""The phone page: what each test number received, for a person playing the phone.

Self-contained HTML (no external resources) that reloads itself every two
seconds. Everything shown is escaped, the filter and the callback URLs included.
"""

from __future__ import annotations

from html import escape

from .core import CallRecord, Emulator
from .numbers import behaviour_for, markdown_table

__all__ = ["render_page"]

_KINDS = {
    "flash_call": "Flash call · Звонок-код",
    "voice_call": "Voice call · Голосовой код",
    "sms": "SMS",
}
_MAX_CALLS = 200

_STYLE = """
body{font:15px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:60em;padding:0 1em;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}
section{border:1px solid #ccc;border-radius:8px;padding:.5em 1em;margin:1em 0}
ol{list-style:none;padding:0}li{padding:.4em 0;border-top:1px solid #eee}
.kind{font-weight:600}.state{color:#555}.when{color:#777;font-size:.9em}
mark{background:#ffe066;font-weight:700;padding:0 .15em}.code{font-size:1.3em}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:.2em .5em}
"""


def _state(call: CallRecord, now: float) -> str:
    return f"{call.label_at(now)} ({call.state_at(now)})"


def _what(call: CallRecord) -> str:
    """What the phone shows or says, with the code highlighted."""
    if call.kind == "flash_call" and behaviour_for(call.number).flash_state is not None:
        # The operator blocks flash calls: the phone never shows the caller.
        return "Blocked by the operator: the phone does not ring · Заблокирован оператором"
    if call.kind == "flash_call" and call.caller:
        head, tail = call.caller[: -len(call.code)], call.caller[-len(call.code) :]
        return (
            "Incoming call from · Входящий звонок: "
            f'<span class="code">'
            f"{escape(head)}<mark>{escape(tail)}</mark></span>"
        )
    if call.kind == "voice_call":
        twice = " … <mark>" + escape(call.code) + "</mark>" if call.repeat else ""
        return (
            f"Caller {escape(call.caller or '')} · the robot says · робот говорит: "
            f'<span class="code"><mark>{escape(call.code)}</mark>{twice}</span>'
        )
    return f"Message · Сообщение: «{escape(call.message or '')}»"


def _table() -> str:
    rows: list[str] = []
    for line in markdown_table().splitlines():
        if line.startswith("| ---"):
            continue
        cells = [cell.strip().replace("`", "") for cell in line.strip("|").split("|")]
        tag = "th" if not rows else "td"
        rows.append("<tr>" + "".join(f"<{tag}>{escape(c)}</{tag}>" for c in cells) + "</tr>")
    return "<table>" + "".join(rows) + "</table>"


def render_page(emulator: Emulator, number: str | None = None) -> str:
    """The phone page as HTML: calls per number, newest first; ``number`` filters."""
    now = emulator.clock()
    calls = emulator.calls[-_MAX_CALLS:]
    if number:
        calls = [call for call in calls if call.number == number]
    by_number: dict[str, list[CallRecord]] = {}
    for call in reversed(calls):
        by_number.setdefault(call.number, []).append(call)
    sections = []
    for phone, received in by_number.items():
        items = "".join(
            f'<li><span class="kind">{escape(_KINDS[call.kind])}</span> '
            f'<span class="when">{call.created_at:%H:%M:%S} · id {escape(call.id)}</span> '
            f'<span class="state">{escape(_state(call, now))}</span><br>{_what(call)}</li>'
            for call in received
        )
        link = f'<a href="/?number={escape(phone)}">{escape(phone)}</a>'
        sections.append(f"<section><h2>{link}</h2><ol>{items}</ol></section>")
    if not sections:
        sections.append("<p>No calls yet · Звонков пока нет.</p>")
    shown = escape(number or "")
    filter_note = ' · <a href="/">all numbers · все номера</a>' if number else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="refresh" content="2">'
        "<title>VoicePassword emulator · Эмулятор VoicePassword</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>VoicePassword emulator · Эмулятор VoicePassword</h1>"
        f"<p>Balance · Баланс: <b>{emulator.balance:.2f}</b> Rub{filter_note}</p>"
        '<form method="get" action="/"><label>Number · Номер '
        f'<input name="number" value="{shown}" inputmode="numeric"></label> '
        "<button>Show · Показать</button></form>"
        + "".join(sections)
        + "<h2>Test numbers · Тестовые номера</h2>"
        + _table()
        + "</body></html>\n"
    )
