#!/usr/bin/env python3
"""The README's two commands, needing nothing but Python 3.11+:

    python3 dev.py run     set up, migrate, create dev credentials once, serve locally
    python3 dev.py test    set up and run the whole test suite (extra args go to pytest)

and two for the edit-test loop:

    python3 dev.py test --fast   the suite less the ``e2e`` tests (those that start
                                 gunicorn, nginx, qcluster, chromium or promtool)
    python3 dev.py lint          what CI lints with: ruff check, ruff format --check, mypy,
                                 lint-imports (import-linter: the floors, pyproject.toml)

All create ``.venv`` on first use and reinstall only when a requirements file changes.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
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


def run() -> None:
    ensure_venv("requirements.txt")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "flashq_project.settings.local"}
    address = os.environ.get("FLASHQ_ADDRESS", "127.0.0.1:8000")
    manage = [str(PYTHON), str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], check=True, env=env)
    subprocess.run([*manage, "dev_bootstrap", "--url", f"http://{address}"], check=True, env=env)
    subprocess.run([*manage, "setup_schedules", "-v", "0"], check=True, env=env)
    # The scheduler (audit sealing, lease sweeping, retention) beside the web server.
    print("Starting the scheduler (manage.py qcluster) ...", flush=True)
    scheduler = subprocess.Popen([*manage, "qcluster"], env=env)
    # Repeatable jobs (queue schedules), fired within the second.
    repeater = subprocess.Popen([*manage, "run_scheduler"], env=env)
    # Webhook deliveries, queued from the job event log and sent.
    webhooks = subprocess.Popen([*manage, "run_webhooks"], env=env)
    # A SIGTERM (not only Ctrl-C) stops the web server and then the scheduler too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        # ASGI, as in production (uvicorn, one process, reloading on code changes), so
        # long polls, job waits and event streams hold no thread here either; static
        # files come from whitenoise. No forwarded headers are believed but the app's.
        host, _, port = address.rpartition(":")
        server = ["-m", "uvicorn", "flashq_project.asgi:application", "--reload"]
        where = ["--host", host, "--port", port, "--no-proxy-headers", "--no-server-header"]
        subprocess.run([str(PYTHON), *server, *where], env=env, check=False, cwd=ROOT)
    except KeyboardInterrupt:
        pass
    finally:
        for process in (webhooks, repeater, scheduler):
            process.terminate()
        for process in (webhooks, repeater, scheduler):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


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
