"""Local development: with nothing set, generates its own secrets once and keeps them
in ``.flashq-dev/secrets.json`` (git-ignored, mode 0600), so restarts keep working."""

from __future__ import annotations

import json
import os
import secrets

from .base import *  # noqa: F403
from .base import BASE_DIR

DEV_DIR = BASE_DIR / ".flashq-dev"


def _dev_secrets() -> dict[str, str]:
    path = DEV_DIR / "secrets.json"
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        return stored
    DEV_DIR.mkdir(mode=0o700, exist_ok=True)
    values = {"SECRET_KEY": secrets.token_urlsafe(50), "TOKEN_PEPPER": secrets.token_urlsafe(32)}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(values, fh)
    return values


_generated = _dev_secrets()
SECRET_KEY = SECRET_KEY or _generated["SECRET_KEY"]  # noqa: F405
TOKEN_PEPPER = TOKEN_PEPPER or _generated["TOKEN_PEPPER"]  # noqa: F405
