"""``python -m deploy.policy``: clean on the checkout (exit 0), and on a checkout whose
files break a rule it lists the findings and exits 1. It needs no Django."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.policy import k8s_schemas
from deploy.policy.__main__ import main
from deploy.policy.dockerignore import SETTINGS
from deploy.policy.manifests import K8S_DIR
from deploy.policy.repository import COMPOSE, DOCKERFILE, DOCKERIGNORE, NGINX_CONF, ROOT


def test_the_checkout_is_clean_and_checked_without_django() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    script = (
        "import sys; from deploy.policy.__main__ import main; code = main([]); "
        "assert 'django' not in sys.modules, 'deploy.policy imported Django'; sys.exit(code)"
    )
    result = subprocess.run(  # noqa: S603 (our own interpreter, a fixed script)
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def _copy(tmp_path: Path) -> Path:
    """The files the checker reads, copied into a checkout of their own."""
    for path in (DOCKERFILE, DOCKERIGNORE, COMPOSE, NGINX_CONF, SETTINGS):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, tmp_path / path)
    shutil.copytree(ROOT / K8S_DIR, tmp_path / K8S_DIR)
    return tmp_path


@pytest.fixture
def without_schemas(monkeypatch: pytest.MonkeyPatch) -> None:
    """The schemas take a second and have their own tests (test_k8s_schemas.py)."""
    monkeypatch.setattr(k8s_schemas, "available", lambda: False)


@pytest.mark.usefixtures("without_schemas")
def test_a_copy_is_clean_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(_copy(tmp_path))]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.usefixtures("without_schemas")
def test_a_broken_checkout_lists_its_findings_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _copy(tmp_path)
    dockerfile = root / DOCKERFILE
    dockerfile.write_text(dockerfile.read_text().replace("USER 10001:10001", "USER root", 1))
    compose = root / COMPOSE
    compose.write_text(compose.read_text().replace("read_only: true", "read_only: false", 1))
    assert main([str(root)]) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) >= 2, out
    assert any(
        line.startswith("Dockerfile: the final stage must end with a numeric, non-root USER")
        and line.endswith("[dockerfile.non-root]")
        for line in lines
    ), out
    assert any(
        line.startswith("deploy/compose.yaml: service ") and line.endswith("[compose.read-only]")
        for line in lines
    ), out
    assert f"{len(lines)} finding(s)" in err
