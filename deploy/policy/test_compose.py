"""deploy/compose.yaml keeps its rules, and a copy broken on purpose is caught."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from deploy.policy.compose import compose_findings
from deploy.policy.repository import ROOT, load_compose
from deploy.policy.rules import OWNER_URL


def test_compose_keeps_its_rules() -> None:
    assert compose_findings(load_compose(ROOT)) == []


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set (or, with value None, delete) a nested key: "services.app.read_only"."""

    def edit(doc: dict[str, Any]) -> None:
        *parents, key = path.split(".")
        node = doc
        for part in parents:
            node = node[part]
        if value is None:
            del node[key]
        else:
            node[key] = value

    return edit


def _owner_url_for(name: str) -> Callable[[dict[str, Any]], None]:
    """``name`` mounts the owner's URL and reads it (its own environment: the services
    share the anchored one)."""

    def edit(doc: dict[str, Any]) -> None:
        service = doc["services"][name]
        service["secrets"] = [*service["secrets"], OWNER_URL]
        service["environment"] = {
            **service["environment"],
            "DATABASE_URL_FILE": f"/run/secrets/{OWNER_URL}",
        }

    return edit


BROKEN_COMPOSE: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "writable app": (_set("services.app.read_only", False), "app must have read_only"),
    "no tmp": (_set("services.scheduler.tmpfs", None), "scheduler needs a tmpfs"),
    "root user": (_set("services.app.user", "0:0"), "numeric non-root"),
    "capabilities kept": (_set("services.migrate.cap_drop", []), "drop every capability"),
    "inline secret": (
        _set("services.app.environment.SECRET_KEY", "x" * 50),
        "SECRET_KEY is a secret value",
    ),
    "inline database password": (
        _set("services.app.environment.DATABASE_URL", "postgres://u:pw@postgres/flashq"),
        "holds a password inline",
    ),
    "secret from the environment": (
        _set("secrets.secret_key", {"environment": "SECRET_KEY"}),
        "must come from a file",
    ),
    "unmounted secret file": (
        _set("services.app.secrets", ["secret_key"]),
        "points at token_pepper, not mounted",
    ),
    "latest postgres": (_set("services.postgres.image", "postgres:latest"), "not pinned"),
    "floating postgres": (_set("services.postgres.image", "postgres:15"), "not pinned"),
    "no migration gate": (_set("services.app.depends_on.migrate", None), "wait for the migration"),
    "scheduler without qcluster": (
        _set("services.scheduler.command", ["python", "manage.py", "runserver"]),
        "qcluster",
    ),
    "local settings": (
        _set("services.app.environment.DJANGO_SETTINGS_MODULE", "flashq_project.settings.local"),
        "production settings",
    ),
    "nginx without the shipped conf": (_set("services.nginx.volumes", []), "flashq.conf"),
    "the app as the owner": (_owner_url_for("app"), "service app gets the owner's database URL"),
    "the owner's URL mounted in the scheduler": (
        lambda doc: doc["services"]["scheduler"].update(
            secrets=[*doc["services"]["scheduler"]["secrets"], OWNER_URL]
        ),
        "service scheduler gets the owner's database URL",
    ),
    "the migration as the runtime role": (
        _set("services.migrate.environment.DATABASE_URL_FILE", "/run/secrets/database_url"),
        "must connect as the tables' owner",
    ),
    "no grants for the runtime role": (
        _set("services.migrate.command", ["python", "manage.py", "migrate", "--noinput"]),
        "must run manage.py grant_runtime_role",
    ),
    "a route out of the scheduler": (
        _set("services.scheduler.networks", ["backend", "egress"]),
        "service scheduler has a route out (egress)",
    ),
    "the webhook sender on the public network": (
        _set("services.webhooks.networks", ["backend", "public"]),
        "service webhooks has a route out (public)",
    ),
    "the owner's URL mounted in the webhook sender": (
        _owner_url_for("webhooks"),
        "service webhooks gets the owner's database URL",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_COMPOSE))
def test_a_broken_compose_file_is_caught(case: str) -> None:
    edit, expected = BROKEN_COMPOSE[case]
    doc = load_compose(ROOT)
    edit(doc)
    problems = [str(finding) for finding in compose_findings(doc)]
    assert any(expected in problem for problem in problems), problems
