"""The metrics app: connects the receivers that count."""

from __future__ import annotations

from django.apps import AppConfig

from django_voicepassword.conf import ConfigurationError

__all__ = ["MetricsConfig"]


class MetricsConfig(AppConfig):
    """``django_voicepassword.contrib.metrics``: Prometheus metrics of ``voicepassword``."""

    name = "django_voicepassword.contrib.metrics"
    label = "voicepassword_metrics"
    verbose_name = "VoicePassword metrics"

    def ready(self) -> None:
        """Import ``prometheus_client`` (or say which extra is missing) and start counting."""
        try:
            from django_voicepassword.contrib.metrics import prometheus
        except ImportError as error:
            if error.name is None or not error.name.startswith("prometheus_client"):
                raise
            raise ConfigurationError(
                "django_voicepassword.contrib.metrics needs the prometheus-client package: "
                "pip install 'django-voicepassword[metrics]'"
            ) from error
        prometheus.connect()
