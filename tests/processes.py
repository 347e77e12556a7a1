"""Starting and stopping the real servers some tests run (gunicorn, nginx)."""

from __future__ import annotations

import http.client
import socket
import subprocess
import time
from pathlib import Path

import pytest

BOOT_SECONDS = 30


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def tail(path: Path) -> str:
    """The end of a server's log, for a failure message."""
    return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"


def wait_for_healthz(
    process: subprocess.Popen[bytes], port: int, log: Path, *, host: str = "127.0.0.1"
) -> None:
    """Until the app answers /healthz itself; a server that exits or never answers fails
    the test with its log."""
    deadline = time.monotonic() + BOOT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server on {port} exited ({process.returncode}): {tail(log)}")
        connection = http.client.HTTPConnection(host, port, timeout=2)
        try:
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.1)
    pytest.fail(f"the server on {port} did not answer /healthz: {tail(log)}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate, then kill if it does not go within 10 s."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
