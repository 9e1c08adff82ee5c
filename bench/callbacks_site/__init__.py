"""The site bench/callbacks.py serves under gunicorn: the app's callback URL and a bare view.

Both sides run in the same processes, with the same settings, middleware and
database connection; only the view differs. See ``bench/callbacks.py``.
"""
