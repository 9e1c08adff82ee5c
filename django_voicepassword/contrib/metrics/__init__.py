"""Prometheus metrics of phone logins, the provider and the callbacks (the ``[metrics]`` extra).

Add ``"django_voicepassword.contrib.metrics"`` to ``INSTALLED_APPS``; then
register :class:`~django_voicepassword.contrib.metrics.collector.VoicePasswordCollector`
in the site's Prometheus registry, or route
:func:`~django_voicepassword.contrib.metrics.views.metrics_view`. See
``docs/howto/metrics.md``. Nothing here is imported by the rest of the package,
so ``prometheus_client`` is imported only by a site that uses this app.
"""
