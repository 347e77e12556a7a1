"""What the package says of itself: its version at run time is the pyproject's, and it
ships its types. (CI installs a wheel into a clean venv: tools/package_check.py.)"""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import flashq_client

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_the_version_at_run_time_is_the_pyprojects() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    assert flashq_client.__version__ == project["version"]
    assert flashq_client.__version__ == importlib.metadata.version("flashq-client")


def test_it_ships_its_types_and_says_so() -> None:
    config = tomllib.loads(PYPROJECT.read_text())
    assert (Path(flashq_client.__file__).parent / "py.typed").is_file()
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["flashq_client"]
    assert "Typing :: Typed" in config["project"]["classifiers"]
    assert config["project"]["dependencies"] == ["httpx>=0.27,<1"]
