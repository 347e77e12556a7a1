#!/usr/bin/env python3
"""The Django tasks backend's tests on Django 6 (``django.tasks``), which needs Python
3.12 or newer:

    python3 clients/python/tools/django6.py [pytest arguments]

makes ``.venv-django6`` at the repository's root with Python 3.12 (``FLASHQ_PYTHON312``,
else ``python3.12`` on the PATH, else pyenv's newest 3.12), installs
clients/python/requirements-django6.txt into it (again only when that file changes), and
runs clients/python/tests/test_django_tasks.py's Django 6 cases with the project's
``.venv`` (``dev.py``'s, made if missing): pytest and the real server (gunicorn, Django
5.2) run there, and the test project's processes (enqueue, get_result, the worker) run
in ``.venv-django6``. Without Python 3.12 it fails, saying where it looked.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
VENV = ROOT / ".venv-django6"
PYTHON = VENV / "bin" / "python"
REQUIREMENTS = ROOT / "clients" / "python" / "requirements-django6.txt"
TESTS = "clients/python/tests/test_django_tasks.py"


def python312() -> str:
    """A Python 3.12 interpreter, or exit saying where none was found."""
    named = os.environ.get("FLASHQ_PYTHON312")
    candidates = [named] if named else []
    candidates.append(shutil.which("python3.12") or "")
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    found = glob.glob(os.path.join(pyenv_root, "versions", "3.12.*", "bin", "python"))

    def version(path: str) -> tuple[int, ...]:
        match = re.search(r"3\.12\.(\d+)", path)
        return (int(match.group(1)),) if match else (-1,)

    candidates += sorted(found, key=version, reverse=True)
    for candidate in filter(None, candidates):
        try:
            done = subprocess.run(  # noqa: S603 - an interpreter we looked for
                [candidate, "-c", "import sys; print(sys.version_info[:2] >= (3, 12))"],
                capture_output=True,
                text=True,
                check=False,
            )
        except OSError:  # not there, or not a program
            continue
        if done.returncode == 0 and done.stdout.strip() == "True":
            return candidate
    sys.exit(
        "django6.py: no Python 3.12 found (looked at FLASHQ_PYTHON312, python3.12 on the "
        f"PATH and {pyenv_root}/versions/3.12.*): install one (pyenv install 3.12) or set "
        "FLASHQ_PYTHON312"
    )


def ensure_venv() -> None:
    stamp = VENV / ".installed"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if PYTHON.exists() and stamp.exists() and stamp.read_text() == wanted:
        return
    if not PYTHON.exists():
        interpreter = python312()
        print(f"Creating {VENV} with {interpreter} ...", flush=True)
        subprocess.run([interpreter, "-m", "venv", str(VENV)], check=True)  # noqa: S603
    print(f"Installing {REQUIREMENTS.relative_to(ROOT)} ...", flush=True)
    pip = [str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True, cwd=ROOT)  # noqa: S603
    stamp.write_text(wanted)


def main() -> int:
    sys.path.insert(0, str(ROOT))
    import dev  # the project's venv, as dev.py test makes it

    dev.ensure_venv("requirements-dev.txt")
    ensure_venv()
    env = {**os.environ, "FLASHQ_DJANGO6_PYTHON": str(PYTHON)}
    argv = [str(dev.PYTHON), "-m", "pytest", "-p", "no:cacheprovider", "-k", "django6"]
    done = subprocess.run([*argv, *sys.argv[1:], TESTS], cwd=ROOT, env=env, check=False)  # noqa: S603
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
