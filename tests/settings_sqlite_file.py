"""The suite's settings on a SQLite file, for ``tests/sqlite_races.py``.

A site on SQLite has a file database, with the options the deployment guide
gives (``IMMEDIATE`` and a timeout): concurrent connections then meet SQLite's
file locking, which an in-memory database shared between threads does not
show. The file is ``VOICEPASSWORD_TEST_SQLITE_FILE`` (``tests/test_sqlite_races.py``
sets it in a temporary directory). The cache is the local-memory one whose
reads yield (``tests/caches.py``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tests.caches import SLOW_READ_LOCMEM
from tests.settings import *  # noqa: F403  (the suite's settings, the database replaced)

_FILE = os.environ.get("VOICEPASSWORD_TEST_SQLITE_FILE") or str(
    Path(tempfile.gettempdir()) / f"voicepassword-races-{os.getpid()}.sqlite3"
)

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": _FILE,
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
        "TEST": {"NAME": _FILE},
    }
}
CACHES = SLOW_READ_LOCMEM
