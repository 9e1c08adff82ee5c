"""Phone verification and phone login for Django through VoicePassword."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django_voicepassword.gateways.offline import OutboxMessage

__version__ = "0.1.0.dev0"

#: What :class:`~django_voicepassword.gateways.LocmemGateway` would have sent,
#: oldest first; tests clear or rebind it, like ``django.core.mail.outbox``.
outbox: list[OutboxMessage] = []
