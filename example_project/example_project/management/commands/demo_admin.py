"""Create (or reset) the demo administrator and print how to log in."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    """``manage.py demo_admin``: the administrator that ``make demo`` prints."""

    help = "Create or reset the demo administrator from DEMO_ADMIN_USERNAME/PASSWORD."

    def handle(self, *args: Any, **options: Any) -> None:
        """Create the user, or reset its password, and print the credentials."""
        username: str = getattr(settings, "DEMO_ADMIN_USERNAME", "admin")
        password: str = getattr(settings, "DEMO_ADMIN_PASSWORD", "demo-password")
        user_model = get_user_model()
        user, created = user_model._default_manager.get_or_create(
            **{user_model.USERNAME_FIELD: username},
            defaults={"is_staff": True, "is_superuser": True},
        )
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        verb = "Created" if created else "Reset"
        self.stdout.write(f"{verb} the demo admin: username {username!r}, password {password!r}")
