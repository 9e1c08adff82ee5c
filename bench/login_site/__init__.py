"""The site bench/login.py serves under gunicorn: the app's login API and its floor.

Both sides run in the same processes, with the same settings, middleware,
database connection, Redis connection pool and session store; only the views
differ. See ``bench/login.py``.
"""
