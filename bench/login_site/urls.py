"""The app's URLs (the login API under ``voicepassword/api/``) beside the floor's two views."""

from __future__ import annotations

from django.urls import include, path

from login_site.views import floor_confirm, floor_start

urlpatterns = [
    path("voicepassword/", include("django_voicepassword.urls")),
    path("floor/challenges/", floor_start, name="floor_start"),
    path("floor/challenges/<uuid:challenge_id>/confirm/", floor_confirm, name="floor_confirm"),
]
