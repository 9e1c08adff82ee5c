"""The bare view's table: a callback as received, like ``CallbackEvent`` without the logic."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class BareEvent(models.Model):
    """One body posted to the bare view (and to the DRF reference view)."""

    provider_id = models.CharField(max_length=32)
    state = models.CharField(max_length=64)
    payload = models.JSONField()
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now)

    # Declared, not implied: the type checker reads the test suite's settings,
    # where this app is not installed.
    objects: models.Manager[BareEvent] = models.Manager()

    def __str__(self) -> str:
        return f"{self.provider_id} {self.state}"
