"""URLs of the example site."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.auth.views import LogoutView
from django.urls import include, path
from django.views.generic import TemplateView

urlpatterns = [
    path(
        "",
        TemplateView.as_view(
            template_name="example_project/home.html",
            # A setting of this site only (settings.py), unknown to the type checker's stubs.
            extra_context={
                "emulator_url": getattr(settings, "EMULATOR_URL", ""),
                "allauth": getattr(settings, "VOICEPASSWORD_DEMO_AUTH", "") == "allauth",
            },
        ),
        name="home",
    ),
    path("admin/", admin.site.urls),
    path("logout/", LogoutView.as_view(), name="logout"),
]
if getattr(settings, "VOICEPASSWORD_DEMO_AUTH", "") == "allauth":
    # django-allauth's pages and its headless API (VOICEPASSWORD_DEMO_AUTH=allauth); of
    # the package, only the provider's callback.
    urlpatterns += [
        path("accounts/", include("allauth.urls")),
        path("_allauth/", include("allauth.headless.urls")),
        path("voicepassword/", include("django_voicepassword.contrib.allauth.urls")),
    ]
else:
    urlpatterns.append(path("voicepassword/", include("django_voicepassword.urls")))
