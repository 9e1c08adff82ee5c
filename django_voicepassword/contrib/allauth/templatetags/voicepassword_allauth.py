"""``{% voicepassword_channel as channel %}``: how allauth's code pages say the code comes."""

from __future__ import annotations

from allauth.account.adapter import get_adapter
from django import template

register = template.Library()


@register.simple_tag
def voicepassword_channel() -> str:
    """The adapter's ``voicepassword_channel`` (``"flash_call"`` or ``"voice_call"``)."""
    return str(getattr(get_adapter(), "voicepassword_channel", "flash_call"))
