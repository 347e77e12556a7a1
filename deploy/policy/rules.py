"""What every deploy file shares: the app's port, the one writable directory, what a
secret's name looks like, which users are non-root and which images are pinned."""

from __future__ import annotations

import re
from typing import Any

APP_PORT = 8000
#: The scheduler's counters (SCHEDULER_METRICS_PORT), for Prometheus only.
SCHEDULER_METRICS_PORT = 9100
#: The one writable directory of a read-only container: a tmpfs (compose) or an
#: emptyDir (Kubernetes), never the image's own.
TMP = "/tmp"  # noqa: S108
#: The database URL of the tables' owner, who can switch the audit triggers off: only
#: the migration may have it; the app and the scheduler run as the runtime role, which
#: owns nothing (README.md, Production).
OWNER_URL = "database_url_owner"

#: A variable named like this holds a secret: it may never be set in an image (ENV,
#: ARG) nor given as a value, only as NAME_FILE pointing at a mounted file.
SECRET_NAME = re.compile(
    r"SECRET|PASSWORD|PASSWD|TOKEN|PEPPER|KEY|CREDENTIAL|DATABASE_URL", re.IGNORECASE
)
#: An exact release in an image tag (3.11.17-slim-bookworm, 1.30.4-alpine3.24): major,
#: minor and patch. Not `latest`, and not `3.11-slim`, which moves with every patch.
EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+([-_+.]|$)")
#: Images whose releases have two parts (PostgreSQL 10 and later: 15.19 is exact).
TWO_PART_RELEASES = {"postgres": re.compile(r"^\d+\.\d+([-_+.]|$)")}
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def unpinned_image(image: str) -> str | None:
    """Why an image reference is not pinned to an exact release (or a digest), or None
    when it is. No tag means `latest`."""
    if DIGEST.search(image):
        return None
    name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
    if not tag:
        return f"image {image!r} has no tag (means latest)"
    exact = TWO_PART_RELEASES.get(name.split("/")[-1], EXACT_VERSION)
    if tag == "latest" or not exact.search(tag):
        return f"image {image!r} is not pinned to an exact version or digest"
    return None


def numeric_non_root(user: str) -> bool:
    """``10001`` or ``10001:10001``: numeric (so a runtime can tell it is not root
    without reading /etc/passwd) and neither part 0."""
    parts = str(user).split(":")
    return len(parts) <= 2 and all(p.isdigit() and int(p) != 0 for p in parts)


def command_line(value: Any) -> str:
    """A command as one string, whether written as a list or a string."""
    return " ".join(value) if isinstance(value, list) else str(value or "")
