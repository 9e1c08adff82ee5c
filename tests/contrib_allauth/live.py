"""The allauth test site on a live server thread, under the directory's settings.

Not pytest-django's ``live_server``: that one is made once per session, and
its handler keeps the middleware of the settings it was made under, which
for this directory lack allauth's.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connections
from django.test.testcases import LiveServerThread, _StaticFilesHandler


@contextmanager
def live_site() -> Iterator[str]:
    """Serve the current settings' site on a free loopback port; yield its URL."""
    # An in-memory SQLite database is one connection: the server thread shares it.
    shared = {
        conn.alias: conn
        for conn in connections.all()
        if conn.vendor == "sqlite" and getattr(conn, "is_in_memory_db", lambda: False)()
    }
    for conn in shared.values():
        conn.inc_thread_sharing()
    thread = LiveServerThread("127.0.0.1", _StaticFilesHandler, shared, port=0)
    thread.daemon = True
    thread.start()
    thread.is_ready.wait()
    if thread.error:
        raise thread.error
    try:
        yield f"http://127.0.0.1:{thread.port}"
    finally:
        thread.terminate()
        thread.join()
        # Request threads are daemons the server does not wait for: the
        # connection they share must outlive them.
        for running in threading.enumerate():
            if running.name.endswith("(process_request_thread)"):
                running.join(timeout=10)
        for conn in shared.values():
            conn.dec_thread_sharing()
