"""The floors hold: import-linter (pyproject.toml's contracts, run by ``dev.py lint`` and
so by CI) fails on an upward import, directly or through other modules, and names the
rule it breaks. Each case copies the five packages, adds one upward import and runs
``lint-imports`` on the copy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import dev

PACKAGES = ("kernel", "compliance", "security", "queues", "flashq_project")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

KERNEL = "kernel sits below every app"
AUDIT = "the audit record (compliance.audit) sits below everything that writes to it"
SECURITY = "security sits below queues and compliance's services"
QUEUES = "queues sits below compliance's erasure and retention"
COMPLIANCE = "compliance sits below the project's wiring"
BARE = "modules import what they use by name, never a bare app package"
INTERFACES = "each app's interfaces sit above its services"

#: (module that gains the import, the import, a new module to create or "", the rule)
UPWARD_IMPORTS = {
    "kernel imports an app": ("kernel/limits.py", "import queues.models", "", KERNEL),
    "the audit record imports retention": (
        "compliance/audit/chain.py",
        "from compliance import retention",
        "",
        AUDIT,
    ),
    "the audit record imports a new module of compliance": (
        "compliance/audit/record.py",
        "from compliance import newthing",
        "compliance/newthing.py",
        AUDIT,
    ),
    "security imports queues": ("security/tokens.py", "import queues.models", "", SECURITY),
    "security imports erasure": (
        "security/tokens.py",
        "from compliance import erasure",
        "",
        SECURITY,
    ),
    "queues imports retention": (
        "queues/pulling.py",
        "from compliance import retention",
        "",
        QUEUES,
    ),
    "queues imports the project's wiring": (
        "queues/selectors.py",
        "import flashq_project.urls",
        "",
        QUEUES,
    ),
    "compliance imports the project's wiring": (
        "compliance/roles.py",
        "from flashq_project import urls",
        "",
        COMPLIANCE,
    ),
    # ``import compliance`` then ``compliance.erasure.x``: the floor is reached by attribute.
    "security reaches erasure through the bare package": (
        "security/tokens.py",
        "import compliance",
        "",
        BARE,
    ),
    "queues reaches retention through the bare package": (
        "queues/pulling.py",
        "import compliance",
        "",
        BARE,
    ),
    "the audit record reaches compliance through the bare package": (
        "compliance/audit/chain.py",
        "import compliance",
        "",
        BARE,
    ),
    "a service reaches its app's admin through the bare package": (
        "queues/pulling.py",
        "import queues",
        "",
        BARE,
    ),
    "a service imports its app's API": (
        "queues/pulling.py",
        "from queues.api import urls",
        "",
        INTERFACES,
    ),
    "a model imports a management command": (
        "security/tokens.py",
        "from security.management.commands import create_token",
        "",
        INTERFACES,
    ),
}


def _copy(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(
            dev.ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(dev.ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    # Wide enough that rich does not wrap a contract's name over two lines.
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_code_as_it_is_keeps_every_floor(tmp_path: Path) -> None:
    done = _lint_imports(_copy(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("where", "line", "new_module", "rule"), UPWARD_IMPORTS.values(), ids=list(UPWARD_IMPORTS)
)
def test_an_upward_import_fails_and_names_the_rule(
    tmp_path: Path, where: str, line: str, new_module: str, rule: str
) -> None:
    root = _copy(tmp_path)
    if new_module:
        (root / new_module).write_text('"""A module added to compliance later."""\n')
    with (root / where).open("a") as module:
        module.write(f"\n{line}\n")
    done = _lint_imports(root)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{rule} BROKEN" in done.stdout
    importer = where.removesuffix(".py").replace("/", ".")
    assert importer in done.stdout  # the chain shown starts or passes there


def test_each_contract_is_a_rule_with_a_case_here() -> None:
    config = tomllib.loads((dev.ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert config["root_packages"] == list(PACKAGES)
    names = [contract["name"] for contract in config["contracts"]]
    assert names == [KERNEL, AUDIT, SECURITY, QUEUES, COMPLIANCE, BARE, INTERFACES]
    assert {rule for *_, rule in UPWARD_IMPORTS.values()} == set(names)
