"""``python3 dev.py run`` as a developer meets it: the banner names FLASHQ_ADDRESS and
comes with no raw audit line above it (the set-up steps' lines go to a file, the events
to the audit trail), and SIGTERM stops everything it started (uvicorn's reloader and
the worker it spawns, qcluster and its workers, the scheduler, the webhook sender),
leaving no process behind and the port free."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

import dev

from .processes import free_port, manage, serve

pytestmark = pytest.mark.e2e


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _descendants(pid: int) -> set[int]:
    tree, found, todo = _children(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process tree in /proc")
def test_dev_run_banner_and_sigterm_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
        "FLASHQ_ADDRESS": f"127.0.0.1:{port}",
        "FLASHQ_DEV_DIR": str(tmp_path / "dev"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "PYTHONUNBUFFERED": "1",
    }
    # Migrated beforehand, so the run is ready within serve's BOOT_SECONDS on a busy
    # machine (its own migrate is then quick; its audit lines come from dev_bootstrap).
    manage({**env, "DJANGO_SETTINGS_MODULE": "flashq_project.settings.local"}, "migrate", "-v", "0")
    # dev.run as `python3 dev.py run` runs it, less the venv check (this is the venv).
    code = "import dev; dev.ensure_venv = lambda requirements: None; dev.run()"
    log = tmp_path / "run.log"
    started: set[int] = set()
    try:
        with serve([sys.executable, "-c", code], env=env, port=port, log=log) as served:
            time.sleep(3)  # qcluster's workers, the reloader's worker
            started = _descendants(served.process.pid)
            assert len(started) >= 5, started  # uvicorn x2, qcluster, scheduler, webhooks
            served.process.send_signal(signal.SIGTERM)
            served.process.wait(timeout=dev.STOP_SECONDS + 20)
    finally:
        for pid in started:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    left = sorted(pid for pid in started if _alive(pid))
    assert not left, f"still running after SIGTERM: {left}"
    assert not _listening(port)
    output = log.read_text()
    before, banner = output.split("flashQ is starting", 1)
    assert '{"time"' not in before and '"action"' not in before, before
    assert "FLASHQ_ADDRESS" in banner and f"127.0.0.1:{port}/admin/" in banner
    # Not dropped: written where the set-up steps' audit lines go.
    assert '"action":"token.create"' in (tmp_path / "dev" / "setup-audit.log").read_text()
