#!/usr/bin/env python3
"""The README's two commands, needing nothing but Python 3.11+:

    python3 dev.py run     set up, migrate, create dev credentials once, serve locally
                           on FLASHQ_ADDRESS (host:port, default 127.0.0.1:8000) until
                           Ctrl-C or SIGTERM, which stop everything it started
    python3 dev.py test    set up and run the whole test suite (extra args go to pytest)

and two for the edit-test loop:

    python3 dev.py test --fast   the suite less the ``e2e`` tests (those that start
                                 gunicorn, nginx, qcluster, chromium or promtool)
    python3 dev.py lint          what CI lints with: ruff check, ruff format --check, mypy,
                                 lint-imports (import-linter: the floors, pyproject.toml),
                                 and the client's REFERENCE.md against its docstrings

All create ``.venv`` on first use and reinstall only when a requirements file changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"


def _requirements_digest(name: str) -> str:
    digest = hashlib.sha256()
    for path in sorted(ROOT.glob("requirements*.txt")):
        digest.update(path.name.encode() + path.read_bytes())
    digest.update(name.encode())
    return digest.hexdigest()


def ensure_venv(requirements: str) -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 (this file may be run by an old python3)
        sys.exit("flashQ needs Python 3.11 or newer")
    if not PYTHON.exists():
        print(f"Creating {VENV} ...", flush=True)
        venv.create(VENV, with_pip=True)
    stamp = VENV / f".installed-{requirements}"
    wanted = _requirements_digest(requirements)
    if stamp.exists() and stamp.read_text() == wanted:
        return
    print(f"Installing {requirements} ...", flush=True)
    pip = [str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    # From the repository's root: requirements-dev.txt installs ./clients/python.
    subprocess.run([*pip, "-r", str(ROOT / requirements)], check=True, cwd=ROOT)
    stamp.write_text(wanted)


DEFAULT_ADDRESS = "127.0.0.1:8000"
#: How long the servers get to stop after SIGTERM before whatever is left is killed.
STOP_SECONDS = 15


def _start(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A server in a process group of its own, so that stopping it reaches every process
    it starts (uvicorn's reloader and its worker, qcluster's workers), and Ctrl-C in the
    terminal reaches only dev.py, which stops them in order."""
    return subprocess.Popen(command, env=env, cwd=ROOT, start_new_session=True)


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to each (the reloader stops its worker, qcluster its workers), then, past
    STOP_SECONDS, SIGKILL to whatever is left of each one's process group."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + STOP_SECONDS
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
    for process in processes:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # its group: a child that outlived it
        process.wait()


def _stop_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)


def run() -> None:
    ensure_venv("requirements.txt")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "flashq_project.settings.local"}
    address = os.environ.get("FLASHQ_ADDRESS", DEFAULT_ADDRESS)
    manage = [str(PYTHON), str(ROOT / "manage.py")]
    # The set-up steps' audit events go to the audit trail as ever, and their log lines
    # to a file rather than the terminal, above the banner.
    dev_dir = Path(os.environ.get("FLASHQ_DEV_DIR") or ROOT / ".flashq-dev")
    dev_dir.mkdir(mode=0o700, exist_ok=True)
    setup = {**env, "FLASHQ_AUDIT_LOG_FILE": str(dev_dir / "setup-audit.log")}
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], check=True, env=setup)
    schedules = [*manage, "setup_schedules", "-v", "0"]
    subprocess.run(schedules, check=True, env=setup, stdout=subprocess.DEVNULL)
    subprocess.run([*manage, "dev_bootstrap", "--url", f"http://{address}"], check=True, env=setup)
    # A SIGTERM (or a closed terminal) stops everything, as Ctrl-C does.
    signal.signal(signal.SIGTERM, _stop_on_signal)
    signal.signal(signal.SIGHUP, _stop_on_signal)
    started: list[subprocess.Popen[bytes]] = []
    try:
        # ASGI, as in production (uvicorn, one process, reloading on code changes), so
        # long polls, job waits and event streams hold no thread here either; static
        # files come from whitenoise. No forwarded headers are believed but the app's.
        host, _, port = address.rpartition(":")
        server = ["-m", "uvicorn", "flashq_project.asgi:application", "--reload"]
        where = ["--host", host, "--port", port, "--no-proxy-headers", "--no-server-header"]
        web = _start([str(PYTHON), *server, *where], env)
        started.append(web)
        # The scheduler (audit sealing, lease sweeping, retention) beside the web server.
        print("Starting the scheduler (manage.py qcluster) ...", flush=True)
        started.append(_start([*manage, "qcluster"], env))
        # Repeatable jobs (queue schedules), fired within the second.
        started.append(_start([*manage, "run_scheduler"], env))
        # Webhook deliveries, queued from the job event log and sent.
        started.append(_start([*manage, "run_webhooks"], env))
        web.wait()
    except KeyboardInterrupt:
        pass
    finally:
        # Stopping is bounded (STOP_SECONDS): a second Ctrl-C or SIGTERM must not cut it
        # short and leave a server behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _stop(started)


def test(args: list[str]) -> None:
    ensure_venv("requirements-dev.txt")
    if "--fast" in args:
        # Before the caller's arguments: a later -m of theirs wins, as pytest takes the last.
        args = ["-m", "not e2e", *(arg for arg in args if arg != "--fast")]
    os.chdir(ROOT)
    os.execv(str(PYTHON), [str(PYTHON), "-m", "pytest", *args])


#: The lint steps, in the order CI runs them (.ci/run calls ``dev.py lint``, so the two
#: cannot drift apart; .pre-commit-config.yaml names the same commands).
LINT_STEPS = (
    ("ruff", "check", "."),
    ("ruff", "format", "--check", "."),
    ("mypy", "."),
    ("lint-imports",),
    # The client's method reference, written from its docstrings: stale is a failure.
    ("python", "clients/python/tools/reference.py", "--check"),
    # ... and every public docstring has its sections (Args, Returns, Raises, Retried).
    ("python", "clients/python/tools/reference.py", "--lint"),
)


def lint() -> None:
    ensure_venv("requirements-dev.txt")
    for tool, *args in LINT_STEPS:
        print(f"== {' '.join((tool, *args))}", flush=True)
        done = subprocess.run([str(VENV / "bin" / tool), *args], cwd=ROOT, check=False)
        if done.returncode != 0:
            sys.exit(done.returncode)


def main() -> None:
    command, *rest = sys.argv[1:] or ["help"]
    if command == "run":
        run()
    elif command == "test":
        test(rest)
    elif command == "lint" and not rest:
        lint()
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
