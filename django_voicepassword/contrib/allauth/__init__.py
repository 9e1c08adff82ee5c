"""django-allauth's phone login and verification over django-voicepassword.

Install with ``pip install "django-voicepassword[allauth]"``, add
``"django_voicepassword.contrib.allauth"`` to ``INSTALLED_APPS`` *before*
``"allauth"`` (its templates replace allauth's code pages), and name the
adapter: ``ACCOUNT_ADAPTER =
"django_voicepassword.contrib.allauth.adapter.VoicePasswordAccountAdapter"``,
or put :class:`~django_voicepassword.contrib.allauth.adapter.VoicePasswordAccountAdapterMixin`
on the site's own adapter. See ``docs/howto/allauth.md``.

Nothing here is imported by the rest of the package: a site without allauth
never loads it.
"""
