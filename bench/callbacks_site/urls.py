"""The app's callback URL beside the two views it is measured against."""

from __future__ import annotations

from django.urls import include, path

from callbacks_site.views import DrfReferenceView, bare

urlpatterns = [
    path("voicepassword/", include("django_voicepassword.urls")),
    path("bare/", bare, name="bare"),
    path("drf/", DrfReferenceView.as_view(), name="drf"),
]
