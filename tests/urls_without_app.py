"""A site that uses the call history but routes none of the app's views."""

from __future__ import annotations

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
