"""The .dockerignore: an allow-list that keeps local state, secrets, caches, tests and
the deployment files (this checker too) out of the build context, and lets the app in."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from deploy.policy.findings import Finding

WHERE = ".dockerignore"
#: Where INSTALLED_APPS is written down; read as Python source, not imported, so the
#: checker needs no Django.
SETTINGS = Path("flashq_project") / "settings" / "base.py"

#: Never in the build context: local state, secrets, caches, version control, tests.
MUST_EXCLUDE = [
    ".git/HEAD",
    ".venv/bin/python",
    ".flashq-dev/secrets.json",
    ".flashq-dev/test.sqlite3",
    "db.sqlite3",
    "db.sqlite3-wal",
    "bench/results/run.json",
    ".pytest_cache/v/cache/nodeids",
    ".mypy_cache/3.11/x.json",
    ".ruff_cache/content",
    ".hypothesis/examples/x",
    "queues/__pycache__/models.cpython-311.pyc",
    "security/__pycache__/x.pyc",
    "staticfiles/admin/css/base.css",
    "tests/conftest.py",
    "deploy/policy/__init__.py",
    "deploy/policy/test_dockerignore.py",
    "deploy/secrets/secret_key",
    "flashq_project/.env",
    "deploy/tls/privkey.pem",
    "somewhere/server.key",
    # Files nobody listed: the allow-list keeps them out too.
    "backup.sql",
    "notes/private.txt",
]


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regular expression over slash-separated paths (Go's
    filepath.Match plus ``**``, as Docker reads it)."""
    pattern = pattern.strip("/")
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignore_excludes(text: str) -> Callable[[str], bool]:
    """Whether a path of the build context is left out: the last pattern that matches
    it or one of its parent directories decides; ``!`` puts it back."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            rules.append((negated, _ignore_regex(line.lstrip("!"))))

    def excluded(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        result = False
        for negated, regex in rules:
            if any(regex.fullmatch(prefix) for prefix in prefixes):
                result = not negated
        return result

    return excluded


def installed_apps(root: Path) -> list[str]:
    """INSTALLED_APPS as the settings write it: a list of string literals."""
    tree = ast.parse((root / SETTINGS).read_text(), filename=str(SETTINGS))
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "INSTALLED_APPS" for t in node.targets)
            and isinstance(node.value, ast.List | ast.Tuple)
        ):
            return [ast.literal_eval(item) for item in node.value.elts]
    raise LookupError(f"{SETTINGS} has no INSTALLED_APPS list")


def _python_files(root: Path, package: str) -> list[Path]:
    return sorted(p for p in (root / package).rglob("*.py") if "__pycache__" not in p.parts)


def _imported_packages(path: Path) -> set[str]:
    """The top-level names a module imports (``kernel`` of ``from kernel.limits ...``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def shipped_packages(root: Path, apps: Iterable[str]) -> list[str]:
    """The project's own packages the image needs: those of its installed apps, and
    every package of the repository they import (kernel/, which is no app), and so on."""
    wanted = {app.split(".")[0] for app in apps}
    shipped: set[str] = set()
    while pending := {p for p in wanted - shipped if (root / p / "__init__.py").exists()}:
        shipped |= pending
        wanted |= {
            name
            for package in pending
            for path in _python_files(root, package)
            for name in _imported_packages(path)
        }
    return sorted(shipped)


def must_include(root: Path, apps: Iterable[str]) -> list[str]:
    """What the image runs: manage.py, the pinned requirements, gunicorn's settings,
    templates, and every Python file of the project's own packages it needs."""
    paths = ["manage.py", "requirements.txt", "deploy/gunicorn.conf.py"]
    paths += [str(p.relative_to(root)) for p in (root / "templates").rglob("*.html")]
    for package in shipped_packages(root, apps):
        paths += [str(p.relative_to(root)) for p in _python_files(root, package)]
    return paths


def dockerignore_findings(text: str, root: Path, apps: Iterable[str]) -> list[Finding]:
    """The .dockerignore's text, checked against the repository at ``root`` whose
    installed apps are ``apps`` (``installed_apps(root)``)."""
    excluded = dockerignore_excludes(text)
    findings = [
        Finding("dockerignore.keeps-out", WHERE, f"{path} would be sent to the builder")
        for path in MUST_EXCLUDE
        if not excluded(path)
    ]
    findings += [
        Finding("dockerignore.lets-in", WHERE, f"{path} would be missing from the image")
        for path in must_include(root, apps)
        if excluded(path)
    ]
    return findings
