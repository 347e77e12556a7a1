"""A Django project's @task functions, enqueued into flashQ over the API and run by the
flashQ worker with flashq_client.django_tasks.run; results read back with get_result.

The project runs in its own processes (this test process has the server's settings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Server, wait_for

pytest.importorskip("django_tasks", reason="needs django-tasks (pip install flashq-client[django])")

PACKAGE_ROOT = Path(__file__).resolve().parents[1]

SETTINGS = """
SECRET_KEY = "a-test-project-not-a-secret-0123456789abcdefghijklmnopqrstuvwxyz"
USE_TZ = True
INSTALLED_APPS = ["django_tasks"]
DATABASES = {{}}
TASKS = {{
    "default": {{
        "BACKEND": "flashq_client.django_tasks.FlashQBackend",
        "QUEUES": ["default", "{queue}"],
        "OPTIONS": {{"URL": "{url}", "QUEUE_PREFIX": "tasks:"}},
    }}
}}
"""

TASKS = """
from django_tasks import task


@task(queue_name="{queue}")
def add(a, b):
    return {{"sum": a + b}}


@task(queue_name="{queue}")
def boom(text):
    raise ValueError(text)


@task(queue_name="{queue}", priority=10, takes_context=True)
def attempt(context):
    return context.attempt
"""

ENQUEUE = """
import json, sys
import django
django.setup()
from project import tasks
results = [tasks.add.enqueue(2, 3), tasks.boom.enqueue("no luck"), tasks.attempt.enqueue()]
print(json.dumps([[r.id, r.status, r.args] for r in results]))
"""

READ = """
import json, sys
import django
django.setup()
from project import tasks
out = {}
for name, result_id in json.loads(sys.argv[1]).items():
    result = getattr(tasks, name).get_result(result_id)
    out[name] = {
        "status": str(result.status),
        "value": result.return_value if result.status == "SUCCESSFUL" else None,
        "errors": [[e.exception_class_path, e.traceback] for e in result.errors],
        "args": result.args,
    }
print(json.dumps(out))
"""


@pytest.fixture
def project(server: Server, tmp_path: Path, queue: str) -> Iterator[dict[str, Any]]:
    package = tmp_path / "project"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text(SETTINGS.format(url=server.url, queue=queue))
    (package / "tasks.py").write_text(TASKS.format(queue=queue))
    env = server.worker_env()
    env["DJANGO_SETTINGS_MODULE"] = "project.settings"
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(PACKAGE_ROOT)])
    workers: list[subprocess.Popen[str]] = []
    yield {"env": env, "cwd": tmp_path, "workers": workers, "queue": f"tasks:{queue}"}
    for worker in workers:
        if worker.poll() is None:
            worker.kill()
        worker.communicate(timeout=10)


def _python(project: dict[str, Any], code: str, *args: str) -> Any:
    done = subprocess.run(  # noqa: S603 - our interpreter, our code
        [sys.executable, "-c", code, *args],
        cwd=project["cwd"],
        env=project["env"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_task_is_enqueued_run_by_the_worker_and_its_result_read_back(
    project: dict[str, Any],
) -> None:
    (add_id, add_status, add_args), (boom_id, *_), (attempt_id, *_) = _python(project, ENQUEUE)
    assert (add_status, add_args) == ("READY", [2, 3])
    ids = json.dumps({"add": add_id, "boom": boom_id, "attempt": attempt_id})
    assert _python(project, READ, ids)["add"]["status"] == "READY"  # nobody ran it yet

    worker = subprocess.Popen(  # noqa: S603 - our interpreter, our module
        [
            sys.executable,
            "-m",
            "flashq_client.worker",
            "flashq_client.django_tasks:run",
            f"--queue={project['queue']}",
            "--wait=1",
        ],
        cwd=project["cwd"],
        env=project["env"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    project["workers"].append(worker)

    def finished() -> bool:
        out = _python(project, READ, ids)
        return all(entry["status"] in ("SUCCESSFUL", "FAILED") for entry in out.values())

    wait_for(finished, timeout=30)
    out = _python(project, READ, ids)
    assert out["add"] == {"status": "SUCCESSFUL", "value": {"sum": 5}, "errors": [], "args": [2, 3]}
    assert out["attempt"]["status"] == "SUCCESSFUL" and out["attempt"]["value"] == 1
    boom = out["boom"]
    assert boom["status"] == "FAILED"
    # The exception's class and text, as the worker recorded them (every attempt).
    assert boom["errors"] and all(e == ["builtins.ValueError", "no luck"] for e in boom["errors"])
