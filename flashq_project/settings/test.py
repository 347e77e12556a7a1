"""Tests: fresh random secrets per run, never the developer's own."""

from __future__ import annotations

import secrets

from security.encryption import generate_key

from .base import *  # noqa: F403
from .base import BASE_DIR, DATABASES

SECRET_KEY = secrets.token_urlsafe(50)
TOKEN_PEPPER = secrets.token_urlsafe(32)
ENCRYPTION_KEYS = f"test1:{generate_key()}"
AUDIT_CHAIN_KEY = f"chain1:{generate_key()}"
# Tests change tokens behind the services' back; test_principal_cache turns it on.
PRINCIPAL_CACHE_SECONDS = 0.0
# Tests change queues behind the services' back too (an UPDATE, as another app server
# would); test_queue_cache and test_query_counts turn it on.
QUEUE_CACHE_SECONDS = 0.0
# Under the live server (WSGI) an event stream is a poll one heartbeat long: short, so
# that none outlives the browser test that opened it.
EVENT_STREAM_HEARTBEAT_SECONDS = 1.0
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# The test client builds its middleware per client: whitenoise would index every static
# file each time. Pages are tested without their styles; test_production_server checks
# that gunicorn serves them.
WHITENOISE_USE_FINDERS = False
STATIC_ROOT = None

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not shared-cache memory: threads in long-poll tests then get real WAL
    # locking with busy_timeout, as in a local run.
    _test_dir = BASE_DIR / ".flashq-dev"
    _test_dir.mkdir(mode=0o700, exist_ok=True)
    DATABASES["default"]["TEST"] = {"NAME": str(_test_dir / "test.sqlite3")}
else:
    # The test client runs every request in the test's own thread and transaction: one
    # connection, no pool (servers started by tests use the production settings').
    DATABASES["default"].get("OPTIONS", {}).pop("pool", None)
    DATABASES["default"]["CONN_MAX_AGE"] = 60
    # Django's test flush empties every table with TRUNCATE; the audit tables refuse it
    # unless the session says so (compliance migration 0004). Only tests set this.
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c flashq.allow_audit_truncate=on"
