"""The edit-test loop: ``dev.py test --fast`` leaves the e2e tests out, and ``dev.py
lint``, CI (.ci/run) and the pre-commit hooks lint with the same commands (ruff, ruff
format, mypy, import-linter and the client's reference check)."""

from __future__ import annotations

import os

import pytest
import yaml

import dev


def _pytest_args(monkeypatch: pytest.MonkeyPatch, *args: str) -> list[str]:
    """What ``dev.py test ARGS`` hands pytest (the venv is the one running these tests)."""
    handed: list[str] = []

    def execv(path: str, argv: list[str]) -> None:
        handed.extend(argv)
        raise SystemExit(0)

    monkeypatch.setattr(dev, "ensure_venv", lambda requirements: None)
    monkeypatch.setattr(os, "execv", execv)
    monkeypatch.chdir(dev.ROOT)  # dev.test changes to the root: back afterwards
    with pytest.raises(SystemExit):
        dev.test(list(args))
    assert handed[:3] == [str(dev.PYTHON), "-m", "pytest"]
    return handed[3:]


def test_fast_leaves_out_the_e2e_tests_and_passes_the_rest_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handed = _pytest_args(monkeypatch, "-q", "--fast", "tests/test_alerts.py")
    assert handed == ["-m", "not e2e", "-q", "tests/test_alerts.py"]


def test_without_fast_every_test_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _pytest_args(monkeypatch, "-q") == ["-q"]


def test_lint_runs_ruff_its_format_check_mypy_import_linter_and_the_reference() -> None:
    assert [" ".join(step) for step in dev.LINT_STEPS] == [
        "ruff check .",
        "ruff format --check .",
        "mypy .",
        "lint-imports",
        "python clients/python/tools/reference.py --check",
        "python clients/python/tools/reference.py --lint",
    ]


def test_ci_lints_through_dev_py_only() -> None:
    lines = (dev.ROOT / ".ci" / "run").read_text().splitlines()
    assert "python3 dev.py lint" in lines
    tools = (".venv/bin/ruff", ".venv/bin/mypy", ".venv/bin/lint-imports")
    assert not [line for line in lines if line.startswith(tools)]


def test_the_pre_commit_hooks_run_dev_py_lints_steps() -> None:
    config = yaml.safe_load((dev.ROOT / ".pre-commit-config.yaml").read_text())
    (local,) = config["repos"]
    assert local["repo"] == "local"
    entries = [hook["entry"] for hook in local["hooks"]]
    assert entries == [" ".join((f".venv/bin/{tool}", *args)) for tool, *args in dev.LINT_STEPS]
