"""URLs of the login API, included under ``api/`` by ``django_voicepassword.urls``.

Names (namespace ``voicepassword``): ``api_challenges`` (POST: start),
``api_challenge`` (GET), ``api_challenge_resend`` and ``api_challenge_confirm``
(POST). The challenge id is matched as any string and read by the view, so
that a malformed id gets the same JSON 404 as an unknown one.
"""

from __future__ import annotations

from django.urls import URLPattern, path

from django_voicepassword.api import login

urlpatterns: list[URLPattern] = [
    path("challenges/", login.ChallengeStartView.as_view(), name="api_challenges"),
    path(
        "challenges/<str:challenge_id>/",
        login.ChallengeDetailView.as_view(),
        name="api_challenge",
    ),
    path(
        "challenges/<str:challenge_id>/resend/",
        login.ChallengeResendView.as_view(),
        name="api_challenge_resend",
    ),
    path(
        "challenges/<str:challenge_id>/confirm/",
        login.ChallengeConfirmView.as_view(),
        name="api_challenge_confirm",
    ),
]
