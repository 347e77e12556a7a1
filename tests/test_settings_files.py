"""Production settings read the way an orchestrator gives them: secrets as files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

from .processes import production_secrets


def _production(env: dict[str, str], code: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "SECRET"))}
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        env={**clean, "DJANGO_SETTINGS_MODULE": "flashq_project.settings.production", **env},
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=False,
    )


def _secret_files(tmp_path: Path) -> dict[str, str]:
    files = {**production_secrets(), "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    env = {}
    for name, value in files.items():
        path = tmp_path / name.lower()
        path.write_text(value + "\n")  # as `echo` or an editor leaves it
        env[f"{name}_FILE"] = str(path)
    return env


def test_a_secret_file_s_trailing_newline_is_not_part_of_the_value(tmp_path: Path) -> None:
    env = _secret_files(tmp_path)
    pepper = Path(env["TOKEN_PEPPER_FILE"]).read_text().strip()
    key = Path(env["SECRET_KEY_FILE"]).read_text().strip()
    done = _production(
        env, "from django.conf import settings as s; print(repr(s.TOKEN_PEPPER), len(s.SECRET_KEY))"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [repr(pepper), str(len(key))]


def test_production_refuses_to_start_without_a_database_url(tmp_path: Path) -> None:
    env = _secret_files(tmp_path)
    del env["DATABASE_URL_FILE"]
    done = _production(env, "pass")
    assert done.returncode != 0
    assert "ImproperlyConfigured" in done.stderr and "DATABASE_URL" in done.stderr


def test_production_refuses_a_retention_rest_out_of_bounds(tmp_path: Path) -> None:
    env = {**_secret_files(tmp_path), "RETENTION_REST": "-1"}
    done = _production(env, "pass")
    assert done.returncode != 0
    assert "ImproperlyConfigured" in done.stderr and "RETENTION_REST" in done.stderr
