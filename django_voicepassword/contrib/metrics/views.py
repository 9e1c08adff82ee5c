"""A Prometheus scrape endpoint, for a site that has none of its own."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from django_voicepassword.contrib.metrics.prometheus import (
    VoicePasswordCollector,
    is_multiprocess,
)

__all__ = ["metrics_view"]


@never_cache
@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The package's metrics in Prometheus's text format.

    Route it yourself (``path("metrics/", metrics_view)``), where only the
    scraper reaches it: it has no authentication of its own. In multi-process
    mode it also serves every metric in ``PROMETHEUS_MULTIPROC_DIR`` (summed
    over the workers by ``MultiProcessCollector``), the site's own included.
    """
    # A registry per scrape: the multi-process collector reads the folder
    # when collected, and the budget gauge reads the cache.
    registry = CollectorRegistry(auto_describe=True)
    if is_multiprocess():
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(VoicePasswordCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
