"""Adapters of the allauth test site beside the ready one."""

from __future__ import annotations

from django_voicepassword.contrib.allauth.adapter import VoicePasswordAccountAdapter


class VoiceAdapter(VoicePasswordAccountAdapter):
    """Codes by voice call."""

    voicepassword_channel = "voice_call"


class TellingAdapter(VoicePasswordAccountAdapter):
    """Failed calls are said, even while allauth prevents enumeration."""

    voicepassword_hide_send_failures = False


class HidingAdapter(VoicePasswordAccountAdapter):
    """Failed calls are answered as sent, even without enumeration prevention."""

    voicepassword_hide_send_failures = True


class SmsAdapter(VoicePasswordAccountAdapter):
    """A channel the package does not place."""

    voicepassword_channel = "sms"
