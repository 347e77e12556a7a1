#!/usr/bin/env python3
"""The client as a user gets it: ``python clients/python/tools/package_check.py``

builds a wheel of clients/python, installs it into a new virtual environment in a
temporary directory (nothing of this checkout on its path), and checks there that the
package imports with the pyproject's version, that ``py.typed`` is installed, that
``flashq-worker --help`` runs, and that mypy (pinned as in requirements-dev.txt) sees the
package's types: a typed consumer passes ``--strict``, and a wrong one fails naming the
type. Exits 1 saying what failed. CI (.ci/run) runs it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
ROOT = PACKAGE.parents[1]

CONSUMER = """
from flashq_client import Client, FlashqError, PushedJob


def send(flashq: Client) -> str:
    try:
        job: PushedJob = flashq.push("email", {"to": "a@example.com"}, priority=5)
    except FlashqError as exc:
        return exc.code
    return job["id"]
"""
WRONG = """
from flashq_client import Client

job: int = Client("https://flashq.example.com").push("email", {})
"""
INSIDE = """
import importlib.resources, json, sys
import flashq_client
files = importlib.resources.files("flashq_client")
print(json.dumps({
    "version": flashq_client.__version__,
    "file": flashq_client.__file__,
    "py.typed": files.joinpath("py.typed").is_file(),
    "prefix": sys.prefix,
}))
"""


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)  # noqa: S603


def _must(done: subprocess.CompletedProcess[str], what: str) -> str:
    if done.returncode != 0:
        sys.exit(f"package check: {what} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def _mypy_pin() -> str:
    text = (ROOT / "requirements-dev.txt").read_text()
    match = re.search(r"^mypy==\S+", text, re.MULTILINE)
    if match is None:
        sys.exit("package check: requirements-dev.txt pins no mypy")
    return match.group(0)


def main() -> int:
    wanted = tomllib.loads((PACKAGE / "pyproject.toml").read_text())["project"]["version"]
    with tempfile.TemporaryDirectory(prefix="flashq-package-") as scratch:
        work = Path(scratch)
        _must(_run([sys.executable, "-m", "venv", str(work / "venv")], work), "python -m venv")
        python, bin_dir = str(work / "venv" / "bin" / "python"), work / "venv" / "bin"
        pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        wheel = [python, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(work / "dist")]
        # Built from a copy: setuptools writes build/ and *.egg-info beside the source.
        source = work / "source"
        ignore = shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "tests", "tools")
        shutil.copytree(PACKAGE, source, ignore=ignore)
        _must(_run([*wheel, str(source)], work), "building the wheel")
        (built,) = (work / "dist").glob("flashq_client-*.whl")
        _must(_run([*pip, str(built), _mypy_pin()], work), f"pip install {built.name}")
        seen = json.loads(_must(_run([python, "-c", INSIDE], work), "import flashq_client"))
        if seen["version"] != wanted:
            sys.exit(f"package check: __version__ is {seen['version']}, pyproject says {wanted}")
        if not seen["file"].startswith(seen["prefix"]) or not seen["py.typed"]:
            sys.exit(f"package check: not installed as a typed package: {seen}")
        usage = _must(_run([str(bin_dir / "flashq-worker"), "--help"], work), "flashq-worker")
        if "--queue" not in usage:
            sys.exit(f"package check: flashq-worker --help says no --queue:\n{usage}")
        (work / "consumer.py").write_text(CONSUMER)
        (work / "wrong.py").write_text(WRONG)
        mypy = [python, "-m", "mypy", "--strict", "--no-incremental"]
        _must(_run([*mypy, "consumer.py"], work), "mypy --strict on a typed consumer")
        wrong = _run([*mypy, "wrong.py"], work)
        # mypy names the answer's TypedDict (PushedJob) by name or by its fields.
        seen_type = '"PushedJob"' in wrong.stdout or "'created': bool" in wrong.stdout
        if wrong.returncode == 0 or not seen_type:
            sys.exit(f"package check: mypy did not see push's type:\n{wrong.stdout}")
        print(f"flashq-client {wanted}: {built.name} installs and imports, py.typed is there,")
        print("flashq-worker --help runs, and mypy sees the package's types")
    return 0


if __name__ == "__main__":
    sys.exit(main())
