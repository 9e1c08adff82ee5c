"""URLs of the login API, included under ``api/`` by ``django_voicepassword.urls``."""

from __future__ import annotations

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
