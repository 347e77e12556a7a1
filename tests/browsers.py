"""What the browser tests share: Debian's chromium (Playwright drives it headless), the
marks every browser test carries and the login as a persona (tests/personas.py). The
``browser`` fixture itself is in conftest.py."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from compliance.audit import Actor

from .personas import PASSWORD

CHROMIUM = shutil.which("chromium")
BROWSER_MARKS = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None, reason="needs Debian's chromium: apt-get install chromium"
    ),
    pytest.mark.django_db(transaction=True),
]
# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
# between browser steps are still plain synchronous code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
SETUP = Actor.command("browser-test")
#: Where browser tests leave their screenshots (kept by CI as artefacts); override with
#: FLASHQ_TEST_ARTIFACTS.
ARTIFACTS = Path(
    os.environ.get("FLASHQ_TEST_ARTIFACTS")
    or Path(__file__).resolve().parent.parent / "test-artifacts"
)


def screenshot(page: Any, name: str, *, width: int | None = None) -> Path:
    """Save a full-page screenshot of ``page`` as ``<ARTIFACTS>/screenshots/<name>.png``
    (at ``width`` px wide if given, keeping the page's height) and return its path."""
    if width is not None:
        page.set_viewport_size({"width": width, "height": page.viewport_size["height"]})
    folder = ARTIFACTS / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (re.sub(r"[^A-Za-z0-9_.-]+", "-", name) + ".png")
    page.screenshot(path=str(path), full_page=True)
    return path


def log_in(browser: Any, base: str, user: Any) -> Any:
    """A new page of ``browser`` logged in to the admin at ``base`` as ``user`` (a persona
    made by tests.personas, or its username), through the login form."""
    name = user if isinstance(user, str) else user.get_username()
    page = browser.new_page(accept_downloads=True)
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", name)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")
    return page
