"""The VoicePassword provider on loopback, for development and tests.

:mod:`.core` is the provider as a state machine (no HTTP, no Django),
:mod:`.numbers` the test numbers, :mod:`.server` the HTTP server and phone page,
:mod:`.pytest_plugin` the fixtures. ``docs/emulator.md`` tells how to use them.
"""

from __future__ import annotations

from .core import (
    Callback,
    CallRecord,
    Delivery,
    Emulator,
    FaultPlan,
    LogEntry,
    ManualClock,
    Response,
)
from .numbers import REGISTERED_ANIS, TEST_NUMBERS, FaultMode, NumberBehaviour
from .server import EmulatorServer, serve

__all__ = [
    "REGISTERED_ANIS",
    "TEST_NUMBERS",
    "CallRecord",
    "Callback",
    "Delivery",
    "Emulator",
    "EmulatorServer",
    "FaultMode",
    "FaultPlan",
    "LogEntry",
    "ManualClock",
    "NumberBehaviour",
    "Response",
    "serve",
]
