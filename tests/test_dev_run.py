"""``python3 dev.py run`` as a developer meets it: the banner names FLASHQ_ADDRESS and
comes with no raw audit line above it (the set-up steps' lines go to a file, the events
to the audit trail), and SIGTERM stops everything it started (uvicorn's reloader and
the worker it spawns, qcluster and its workers, the scheduler, the webhook sender),
leaving no process behind and the port free."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import dev

from .processes import free_port

pytestmark = pytest.mark.e2e
BOOT_SECONDS = 180


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


def _answers(port: int) -> bool:
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
    log = tmp_path / "run.log"
    # dev.run as `python3 dev.py run` runs it, less the venv check (this is the venv).
    code = "import dev; dev.ensure_venv = lambda requirements: None; dev.run()"
    with log.open("wb") as out:
        run = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=dev.ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started: set[int] = set()
    try:
        deadline = time.monotonic() + BOOT_SECONDS
        while not _answers(port):
            assert run.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            started |= _descendants(run.pid)
            time.sleep(0.5)
        time.sleep(3)  # qcluster's workers, the reloader's worker
        started |= _descendants(run.pid)
        assert len(started) >= 5, started  # uvicorn x2, qcluster, scheduler, webhooks
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=dev.STOP_SECONDS + 20)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        for pid in _descendants(run.pid) | started:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    left = sorted(pid for pid in started if _alive(pid))
    assert not left, f"still running after SIGTERM: {left}"
    assert not _answers(port)
    output = log.read_text()
    before, banner = output.split("flashQ is starting", 1)
    assert '{"time"' not in before and '"action"' not in before, before
    assert "FLASHQ_ADDRESS" in banner and f"127.0.0.1:{port}/admin/" in banner
    # Not dropped: written where the set-up steps' audit lines go.
    assert '"action":"token.create"' in (tmp_path / "dev" / "setup-audit.log").read_text()
