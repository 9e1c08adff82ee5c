"""Adapters of the allauth test site beside the ready one."""

from __future__ import annotations

from django_voicepassword.contrib.allauth.adapter import VoicePasswordAccountAdapter


class VoiceAdapter(VoicePasswordAccountAdapter):
    """Codes by voice call."""

    voicepassword_channel = "voice_call"
