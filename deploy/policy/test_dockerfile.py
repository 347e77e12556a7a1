"""The Dockerfile keeps its rules, and a copy broken on purpose (in memory, never on
disk) is caught, one rule at a time."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from deploy.policy.dockerfile import dockerfile_findings
from deploy.policy.repository import DOCKERFILE, ROOT


def _dockerfile() -> str:
    return (ROOT / DOCKERFILE).read_text()


def test_the_dockerfile_keeps_its_rules() -> None:
    assert dockerfile_findings(_dockerfile()) == []


def _replace(old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert old in text, f"the Dockerfile changed: {old!r} is gone; update this test"
        return text.replace(old, new, 1)

    return edit


_RUNTIME_FROM = "FROM base AS runtime\n"
BROKEN_DOCKERFILES: dict[str, tuple[Callable[[str], str], str]] = {
    "latest base": (
        _replace("FROM python:3.11.17-slim-bookworm AS", "FROM python:latest AS"),
        "not pinned",
    ),
    "minor-version base": (
        _replace("FROM python:3.11.17-slim-bookworm AS", "FROM python:3.11-slim-bookworm AS"),
        "not pinned",
    ),
    "floating base": (
        _replace("FROM python:3.11.17-slim-bookworm AS", "FROM python:3-slim AS"),
        "not pinned",
    ),
    "untagged base": (_replace("FROM nginx:1.30.4-alpine3.24", "FROM nginx"), "no tag"),
    "root user": (_replace("USER 10001:10001", "USER root"), "non-root USER"),
    "uid 0": (_replace("USER 10001:10001", "USER 0"), "non-root USER"),
    "user name": (_replace("USER 10001:10001", "USER flashq"), "non-root USER"),
    "no user": (_replace("USER 10001:10001\n", ""), "non-root USER"),
    "secret in ENV": (
        _replace(_RUNTIME_FROM, _RUNTIME_FROM + "ENV SECRET_KEY=abc\n"),
        "ENV SECRET_KEY",
    ),
    "pepper in ARG": (
        _replace(_RUNTIME_FROM, _RUNTIME_FROM + "ARG TOKEN_PEPPER\n"),
        "ARG TOKEN_PEPPER",
    ),
    "key in builder ENV": (
        _replace("ENV PIP_DISABLE", "ENV ENCRYPTION_KEYS=k1:abc PIP_DISABLE"),
        "ENV ENCRYPTION_KEYS",
    ),
    "literal build secret": (
        _replace('SECRET_KEY="$(python', 'SECRET_KEY="hunter2" X="$(python'),
        "RUN sets SECRET_KEY",
    ),
    "gcc at runtime": (
        _replace(_RUNTIME_FROM, _RUNTIME_FROM + "RUN apt-get install -y gcc\n"),
        "build tools",
    ),
    "build-essential at runtime": (
        _replace(_RUNTIME_FROM, _RUNTIME_FROM + "RUN apt-get install -y build-essential\n"),
        "build tools",
    ),
    "runtime built on the builder": (
        _replace(_RUNTIME_FROM, "FROM builder AS runtime\n"),
        "build tools",
    ),
    "no healthcheck": (_replace("HEALTHCHECK", "# HEALTHCHECK"), "HEALTHCHECK on /readyz"),
    "healthcheck elsewhere": (_replace("/readyz'", "/healthz'"), "HEALTHCHECK on /readyz"),
    "bytecode written": (
        _replace("PYTHONDONTWRITEBYTECODE=1", "PYTHONFOO=1"),
        "PYTHONDONTWRITEBYTECODE",
    ),
    "no expose": (_replace("EXPOSE 8000", "EXPOSE 9000"), "EXPOSE 8000"),
    "runserver": (
        _replace('CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py"]', 'CMD ["python"]'),
        "gunicorn",
    ),
    "single stage": (lambda text: "FROM python:3.11.17-slim-bookworm\nUSER 10001\n", "multi"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_DOCKERFILES))
def test_a_broken_dockerfile_is_caught(case: str) -> None:
    edit, expected = BROKEN_DOCKERFILES[case]
    problems = [str(finding) for finding in dockerfile_findings(edit(_dockerfile()))]
    assert any(expected in problem for problem in problems), problems


def test_a_finding_names_its_rule_and_line() -> None:
    text = _replace(_RUNTIME_FROM, _RUNTIME_FROM + "ENV SECRET_KEY=abc\n")(_dockerfile())
    line = text.splitlines().index("ENV SECRET_KEY=abc") + 1
    [finding] = dockerfile_findings(text)
    assert (finding.rule, finding.where) == ("dockerfile.no-secret-in-image", f"Dockerfile:{line}")
