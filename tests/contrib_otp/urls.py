"""The django-otp test site's URLs: the admin is django-otp's OTPAdminSite."""

from __future__ import annotations

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
