"""The django-otp device's tests, on a site of their own (``settings.py`` here)."""
