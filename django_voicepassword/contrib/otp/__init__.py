"""django-otp integration: :class:`~.models.VoicePasswordDevice`, a flash-call device.

Add ``"django_otp"`` and ``"django_voicepassword.contrib.otp"`` to
``INSTALLED_APPS`` (``pip install "django-voicepassword[otp]"``). With
django-two-factor-auth installed too, the app registers the "flash call"
method beside two_factor's own (:mod:`.twofactor`). Nothing here is imported
by the rest of the package: a site without django-otp never loads it.
"""
