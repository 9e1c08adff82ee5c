"""The emulator's test numbers: which number gives which answer.

Every number here lies in the project's test range 79990000000 to 79990000099; no
other number is special. Any other well-formed number (11 to 15 digits) behaves
like :data:`ANSWERED_NUMBER`. ``docs/emulator.md`` reproduces
:func:`markdown_table` verbatim, and a test keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "ANSWERED_NUMBER",
    "DEFAULT_BEHAVIOUR",
    "REGISTERED_ANIS",
    "TEST_NUMBERS",
    "FaultMode",
    "NumberBehaviour",
    "behaviour_for",
    "markdown_table",
]


class FaultMode(StrEnum):
    """How the transport misbehaves; see ``docs/emulator.md`` for what a client sees."""

    #: The answer comes after ``slow_seconds`` (longer than a client's read timeout).
    SLOW = "slow"
    #: HTTP 500 with an HTML body; the request is not processed (no call placed).
    HTTP500 = "http500"
    #: HTTP 502 with a proxy's HTML page, after the call was placed: the
    #: provider answered too late, or died after placing it, for the proxy in front.
    HTTP502 = "http502"
    #: HTTP 200 with an HTML page instead of JSON; the call is placed.
    HTML = "html"
    #: HTTP 200 with the JSON answer cut in half; the call is placed.
    TRUNCATED = "truncated"
    #: The connection is closed after the request was read, without an answer;
    #: the call is placed.
    DROPPED = "dropped"


@dataclass(frozen=True)
class NumberBehaviour:
    """What the emulator does with requests to one number.

    ``call_state`` is the final state of a flash or voice call (callback name),
    ``call_label`` the Russian label ``get/`` shows for it when it differs from
    the usual one, ``sms_state`` the final state of an SMS fallback.
    ``error_code`` makes ``send/`` refuse the call; ``fault`` makes the transport
    misbehave on ``send/``. ``flash_state``, when set, is the final state of a
    flash call alone (``call_state`` is then a voice call's): a number whose
    operator blocks flash calls.
    """

    number: str
    description: str
    call_state: str = "ANSWERED"
    call_label: str | None = None
    sms_state: str = "DELIVERED"
    error_code: str | None = None
    fault: FaultMode | None = None
    flash_state: str | None = None

    def state_of(self, kind: str) -> str:
        """The final state of a call of ``kind`` (``"flash_call"`` or ``"voice_call"``)."""
        if kind == "flash_call" and self.flash_state is not None:
            return self.flash_state
        return self.call_state


#: The behaviour of every number that is not in :data:`TEST_NUMBERS`.
DEFAULT_BEHAVIOUR = NumberBehaviour("", "any other number: answered, SMS delivered")

#: A number that is answered (the same as any number outside the table).
ANSWERED_NUMBER = "79990000001"

_TABLE = (
    NumberBehaviour(ANSWERED_NUMBER, "call answered; SMS delivered"),
    NumberBehaviour("79990000002", "call busy", call_state="BUSY"),
    NumberBehaviour("79990000003", "call not answered; SMS delivered", call_state="NO ANSWER"),
    NumberBehaviour("79990000004", "call failed", call_state="FAIL"),
    NumberBehaviour("79990000005", "call cancelled", call_state="CANCEL"),
    NumberBehaviour(
        "79990000006",
        "call failed; get/ shows the label Недозвон",
        call_state="FAIL",
        call_label="Недозвон",
    ),
    NumberBehaviour(
        "79990000013",
        "flash call never delivered (blocked by the operator); voice call answered",
        flash_state="NO ANSWER",
    ),
    NumberBehaviour(
        "79990000011",
        "call not answered; SMS not delivered",
        call_state="NO ANSWER",
        sms_state="NOT DELIVERED",
    ),
    NumberBehaviour(
        "79990000012",
        "call not answered; SMS failed",
        call_state="NO ANSWER",
        sms_state="FAIL",
    ),
    NumberBehaviour("79990000020", "send/ refused", error_code="number_not_valid"),
    NumberBehaviour("79990000021", "send/ refused", error_code="number_not_permitted"),
    NumberBehaviour("79990000022", "send/ refused", error_code="number_in_spam_list"),
    NumberBehaviour("79990000023", "send/ refused", error_code="not_enough_money"),
    NumberBehaviour("79990000024", "send/ refused", error_code="user_disabled"),
    NumberBehaviour("79990000030", "answer too late; call placed", fault=FaultMode.SLOW),
    NumberBehaviour("79990000031", "HTTP 500; no call placed", fault=FaultMode.HTTP500),
    NumberBehaviour("79990000032", "HTML page (200); call placed", fault=FaultMode.HTML),
    NumberBehaviour(
        "79990000033", "JSON cut in half (200); call placed", fault=FaultMode.TRUNCATED
    ),
    NumberBehaviour("79990000034", "connection dropped; call placed", fault=FaultMode.DROPPED),
    NumberBehaviour("79990000037", "HTTP 502 from a proxy; call placed", fault=FaultMode.HTTP502),
)

#: Test number → behaviour.
TEST_NUMBERS: dict[str, NumberBehaviour] = {row.number: row for row in _TABLE}

#: Caller numbers registered in the emulated account: the only ``voice.ani``
#: values accepted (anything else is ``ani_phone_not_valid``).
REGISTERED_ANIS: tuple[str, ...] = ("79990000090", "79990000091")


def behaviour_for(number: str) -> NumberBehaviour:
    """The behaviour of ``number``: its table row, or :data:`DEFAULT_BEHAVIOUR`."""
    return TEST_NUMBERS.get(number, DEFAULT_BEHAVIOUR)


def markdown_table() -> str:
    """The test-number table as ``docs/emulator.md`` shows it."""
    lines = [
        "| number | call state | SMS state | send/ error | fault | what happens |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in _TABLE:
        placed = row.error_code is None and row.fault is not FaultMode.HTTP500
        call = f"`{row.call_state}`" if placed else "—"
        if placed and row.flash_state is not None:
            call = f"`{row.flash_state}` (flash), `{row.call_state}` (voice)"
        sms = f"`{row.sms_state}`" if placed else "—"
        error = f"`{row.error_code}`" if row.error_code else "—"
        fault = f"`{row.fault.value}`" if row.fault else "—"
        lines.append(
            f"| `{row.number}` | {call} | {sms} | {error} | {fault} | {row.description} |"
        )
    for ani in REGISTERED_ANIS:
        lines.append(
            f"| `{ani}` | `ANSWERED` | `DELIVERED` | — | — | "
            "registered caller number (`voice.ani`); called, like any other |"
        )
    lines.append("| any other | `ANSWERED` | `DELIVERED` | — | — | as `79990000001` |")
    return "\n".join(lines)
