"""The django-otp test site's URLs: the admin is django-otp's OTPAdminSite."""

from __future__ import annotations

from django.apps import apps
from django.contrib import admin
from django.urls import include, path
from django_otp.admin import OTPAdminSite

from django_voicepassword.contrib.otp.admin import VoicePasswordDeviceAdmin
from django_voicepassword.contrib.otp.models import VoicePasswordDevice

# A site of its own rather than ``admin.site.__class__ = OTPAdminSite`` (which
# django-otp's documentation shows for a real site): the rest of the suite
# keeps the plain admin in the same process.
otp_admin = OTPAdminSite(name="otpadmin")
otp_admin.register(VoicePasswordDevice, VoicePasswordDeviceAdmin)
for model, model_admin in admin.site._registry.items():
    if model is not VoicePasswordDevice:
        otp_admin.register(model, type(model_admin))

urlpatterns = [
    path("admin/", otp_admin.urls),
    path("voicepassword/", include("django_voicepassword.urls")),
]

if apps.is_installed("two_factor"):
    from two_factor.urls import urlpatterns as two_factor_urls

    from django_voicepassword.contrib.otp.twofactor import SetupView

    urlpatterns += [
        # Before two_factor's own, at the same path: its set-up cannot finish
        # a plugin's method (docs/decisions.md).
        path("account/two_factor/setup/", SetupView.as_view(), name="setup"),
        path("", include(two_factor_urls)),
    ]
