"""The package's URLs a site on allauth needs: the provider's callback, without the login pages.

``path("voicepassword/", include("django_voicepassword.contrib.allauth.urls"))``:
the namespace is ``voicepassword``, as with ``django_voicepassword.urls``, so
that the calls' callback URLs are the same.
"""

from __future__ import annotations

from django.urls import path

from django_voicepassword.api.views import CallbackView

app_name = "voicepassword"

urlpatterns = [
    path("callback/<str:token>/", CallbackView.as_view(), name="callback"),
]
