"""Test personas and real servers are defined once: staff users are made and logged in
by tests/personas.py, processes are started by tests/processes.py (``serve``), and no
other test module does either by hand. And ``serve`` fails a test with the server's log
when the server dies or never answers."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from . import processes
from .processes import free_port, serve

TESTS = Path(__file__).resolve().parent

#: Where each construction may appear, and why.
ALLOWED: dict[str, dict[str, str]] = {
    "create_superuser": {"personas.py": "make_superuser: the superuser persona"},
    "create_user(is_staff=True)": {"personas.py": "make_staff_user: every staff persona"},
    "force_login": {"personas.py": "logged_in: the client of a persona"},
    "Popen": {"processes.py": "serve: every real server a test starts"},
}


def _constructions(tree: ast.AST) -> list[tuple[str, int]]:
    """(kind, line) of each call in ``tree`` that makes a staff user, logs a client in
    or starts a process."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in ("create_superuser", "force_login", "Popen"):
            found.append((name, node.lineno))
        elif name == "create_user" and any(
            keyword.arg == "is_staff"
            and not (isinstance(keyword.value, ast.Constant) and keyword.value.value is False)
            for keyword in node.keywords
        ):
            found.append(("create_user(is_staff=True)", node.lineno))
    return found


def test_staff_users_logins_and_processes_are_made_only_by_their_helpers() -> None:
    misplaced = []
    for path in sorted(TESTS.glob("*.py")):
        for kind, line in _constructions(ast.parse(path.read_text(), str(path))):
            if path.name not in ALLOWED[kind]:
                misplaced.append(f"tests/{path.name}:{line}: {kind}")
    assert misplaced == [], (
        "Use tests/personas.py (make_* and logged_in) and tests/processes.py (serve), "
        f"or add the file to ALLOWED with a reason: {misplaced}"
    )


def test_the_scan_sees_each_construction() -> None:
    source = """
User.objects.create_superuser("x", "", "pw")
get_user_model().objects.create_user("y", password="pw", is_staff=True)
get_user_model().objects.create_user("z", password="pw")
client.force_login(user)
subprocess.Popen(["true"])
"""
    assert [kind for kind, _ in _constructions(ast.parse(source))] == [
        "create_superuser",
        "create_user(is_staff=True)",
        "force_login",
        "Popen",
    ]


def test_a_server_that_exits_fails_the_test_with_its_log(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "print('no database configured'); raise SystemExit(3)"]
    with (
        pytest.raises(pytest.fail.Exception, match="exited \\(3\\): no database configured"),
        serve(argv, env={}, port=free_port(), log=tmp_path / "server.log"),
    ):
        pass  # never reached: the server exits first


def test_a_server_that_never_answers_fails_the_test_and_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(processes, "BOOT_SECONDS", 1)
    argv = [sys.executable, "-u", "-c", "import time; print('booting'); time.sleep(60)"]
    stopped: list[subprocess.Popen[bytes]] = []
    real_stop = processes.stop

    def stop(process: subprocess.Popen[bytes]) -> None:
        stopped.append(process)
        real_stop(process)

    monkeypatch.setattr(processes, "stop", stop)
    with (
        pytest.raises(pytest.fail.Exception, match="did not answer /healthz: booting"),
        serve(argv, env={}, port=free_port(), log=tmp_path / "server.log"),
    ):
        pass  # never reached: the server is never ready
    [process] = stopped
    assert process.poll() is not None
