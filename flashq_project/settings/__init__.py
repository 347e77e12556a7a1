"""Settings modules: ``local`` (default for manage.py), ``production`` (default for
wsgi.py/gunicorn) and ``test`` (pytest). All read the environment through ``base``."""
