"""The .dockerignore keeps local state, secrets and the deploy tooling out of the build
context and lets the app in; a copy broken on purpose is caught."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.conf import settings

from deploy.policy.dockerignore import dockerignore_findings, installed_apps, shipped_packages
from deploy.policy.repository import DOCKERIGNORE, ROOT


def _findings(text: str) -> list[str]:
    return [str(f) for f in dockerignore_findings(text, ROOT, installed_apps(ROOT))]


def test_the_dockerignore_keeps_local_state_out_and_the_app_in() -> None:
    assert _findings((ROOT / DOCKERIGNORE).read_text()) == []


def test_the_installed_apps_are_read_as_django_reads_them() -> None:
    """The checker reads the settings' source, not Django: both must agree."""
    assert installed_apps(ROOT) == list(settings.INSTALLED_APPS)


def test_the_image_gets_the_packages_the_apps_import() -> None:
    """kernel/ is no installed app, but every app imports it."""
    assert shipped_packages(ROOT, installed_apps(ROOT)) == [
        "compliance",
        "flashq_project",
        "kernel",
        "queues",
        "security",
    ]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda t: t.replace("\n*\n", "\n", 1), "backup.sql would be sent"),
        (lambda t: t + "!.flashq-dev\n", ".flashq-dev/secrets.json would be sent"),
        (
            lambda t: t.replace("**/__pycache__\n", "").replace("**/*.py[cod]\n", ""),
            "__pycache__/models.cpython-311.pyc would",
        ),
        (lambda t: t.replace("!queues/\n", ""), "queues/models.py would be missing"),
        (lambda t: t + "templates\n", "templates/admin/flashq_index.html would be missing"),
        (lambda t: t + "!deploy/\n", "deploy/policy/__init__.py would be sent"),
        (lambda t: t.replace("!kernel/\n", ""), "kernel/limits.py would be missing"),
    ],
    ids=[
        "no catch-all",
        "dev secrets back in",
        "bytecode",
        "an app left out",
        "templates out",
        "the checker in",
        "the kernel left out",
    ],
)
def test_a_broken_dockerignore_is_caught(edit: Callable[[str], str], expected: str) -> None:
    problems = _findings(edit((ROOT / DOCKERIGNORE).read_text()))
    assert any(expected in problem for problem in problems), problems
