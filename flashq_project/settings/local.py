"""Local development: with nothing set, generates its own secrets once and keeps them
(Django secret key, token pepper, payload encryption key, audit chain key)
in ``.flashq-dev/secrets.json`` (git-ignored, mode 0600), so restarts keep working."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import cast

from security.encryption import generate_key

from .base import *  # noqa: F403
from .base import BASE_DIR

# FLASHQ_DEV_DIR: elsewhere, e.g. for a test that runs ``dev.py run`` on a database of
# its own without touching the developer's credentials.
DEV_DIR = Path(os.environ.get("FLASHQ_DEV_DIR") or BASE_DIR / ".flashq-dev")


def _new_secrets() -> dict[str, str]:
    return {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "TOKEN_PEPPER": secrets.token_urlsafe(32),
        "ENCRYPTION_KEYS": f"dev1:{generate_key()}",
        "AUDIT_CHAIN_KEY": f"devchain1:{generate_key()}",
    }


def _dev_secrets() -> dict[str, str]:
    """The stored secrets; any missing one (an older file) is generated and added."""
    path = DEV_DIR / "secrets.json"
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = {name: value for name, value in _new_secrets().items() if name not in stored}
    if not missing:
        return stored
    DEV_DIR.mkdir(mode=0o700, exist_ok=True)
    values = {**stored, **missing}
    partial = path.with_suffix(".tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(values, fh)
    os.replace(partial, path)
    return values


_generated = _dev_secrets()
SECRET_KEY = SECRET_KEY or _generated["SECRET_KEY"]  # noqa: F405
TOKEN_PEPPER = TOKEN_PEPPER or _generated["TOKEN_PEPPER"]  # noqa: F405
# Lose this file and the local database's job payloads cannot be read any more.
ENCRYPTION_KEYS = ENCRYPTION_KEYS or _generated["ENCRYPTION_KEYS"]  # noqa: F405
# Lose this one and the local audit chain no longer verifies.
AUDIT_CHAIN_KEY = AUDIT_CHAIN_KEY or _generated["AUDIT_CHAIN_KEY"]  # noqa: F405
# ``dev.py run``'s set-up steps (migrate, setup_schedules, dev_bootstrap) log their
# audit lines here, not on the terminal above its banner (the events are in the trail).
if os.environ.get("FLASHQ_AUDIT_LOG_FILE"):
    cast(dict[str, object], LOGGING["handlers"])["audit"] = {  # noqa: F405
        "class": "logging.FileHandler",
        "filename": os.environ["FLASHQ_AUDIT_LOG_FILE"],
        "formatter": "message",
    }
# Static files come straight from the apps (whitenoise with finders): nothing to collect.
if not os.environ.get("STATIC_ROOT"):
    STATIC_ROOT = None
