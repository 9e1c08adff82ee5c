"""The HTML phone-login and phone-verification flows."""

from __future__ import annotations

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
