"""The server installs exact versions; the client library declares ranges, so it fits
beside the httpx an application already has."""

from __future__ import annotations

import re
import tomllib

from django.conf import settings
from packaging.requirements import Requirement

ROOT = settings.BASE_DIR


def test_the_servers_requirements_are_exact_pins() -> None:
    requirements = [
        line
        for path in sorted(ROOT.glob("requirements*.txt"))
        for line in path.read_text().splitlines()
        if line.strip() and not line.startswith(("#", "-r ", "-e "))
    ]
    assert "httpx==0.28.1" in requirements
    loose = [line for line in requirements if not re.fullmatch(r"[\w.\[\],-]+==[\w.]+", line)]
    assert not loose


def test_the_client_declares_a_compatible_range_for_httpx() -> None:
    project = tomllib.loads((ROOT / "clients" / "python" / "pyproject.toml").read_text())
    (httpx,) = [Requirement(spec) for spec in project["project"]["dependencies"]]
    assert httpx.name == "httpx"
    versions = ("0.26.0", "0.27.0", "0.28.1", "0.99.0", "1.0.0")
    allowed = [version for version in versions if httpx.specifier.contains(version)]
    assert allowed == ["0.27.0", "0.28.1", "0.99.0"]
