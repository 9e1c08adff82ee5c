"""The allauth test site's URLs: allauth's pages, its headless API, and a landing page."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.utils.html import escape


def done(request: HttpRequest) -> HttpResponse:
    """Where a login lands: who is logged in."""
    who = request.user.get_username() if request.user.is_authenticated else ""
    return HttpResponse(f"<h1>Welcome</h1><p id=who>{escape(who)}</p>")


urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("_allauth/", include("allauth.headless.urls")),
    path("voicepassword/", include("django_voicepassword.urls")),
    path("done/", done),
]
