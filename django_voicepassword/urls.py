"""URLs of the app: ``path("voicepassword/", include("django_voicepassword.urls"))``."""

from __future__ import annotations

from django.urls import include, path

from django_voicepassword import views
from django_voicepassword.api.views import CallbackView

app_name = "voicepassword"

urlpatterns = [
    path("callback/<str:token>/", CallbackView.as_view(), name="callback"),
    path("api/", include("django_voicepassword.api.urls")),
    *views.urlpatterns,
]
