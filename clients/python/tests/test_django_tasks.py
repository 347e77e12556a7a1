"""A Django project's @task functions, enqueued into flashQ over the API and run by the
flashQ worker with flashq_client.django_tasks.run; results read back with get_result.

The project runs in its own processes (this test process has the server's settings),
once per tasks framework: the django-tasks backport on this interpreter (Django 5.2),
and Django 6's own ``django.tasks`` on the interpreter ``FLASHQ_DJANGO6_PYTHON`` names,
else ``.venv-django6``'s (``python3 clients/python/tools/django6.py`` makes it and runs
these cases); the server is the same in both."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import Server, make_token, wait_for

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
REPO = PACKAGE_ROOT.parents[1]
DJANGO6_VENV_PYTHON = REPO / ".venv-django6" / "bin" / "python"
FLASHQ_BACKEND = "flashq_client.django_tasks.FlashQBackend"


@dataclass(frozen=True)
class Framework:
    python: str  # the interpreter the project runs on
    module: str  # where @task and the signals come from
    apps: list[str]  # what INSTALLED_APPS needs for it


@pytest.fixture(params=["backport", "django6"])
def framework(request: pytest.FixtureRequest) -> Framework:
    if request.param == "backport":
        pytest.importorskip("django_tasks", reason="needs django-tasks (flashq-client[django])")
        return Framework(sys.executable, "django_tasks", ["django_tasks"])
    named = os.environ.get("FLASHQ_DJANGO6_PYTHON")
    if named and not Path(named).is_file():
        pytest.fail(f"FLASHQ_DJANGO6_PYTHON names no interpreter: {named}")
    python = Path(named) if named else DJANGO6_VENV_PYTHON
    if not python.is_file():
        pytest.skip("needs Django 6: python3 clients/python/tools/django6.py runs these")
    return Framework(str(python), "django.tasks", [])


SETTINGS = """
SECRET_KEY = "a-test-project-not-a-secret-0123456789abcdefghijklmnopqrstuvwxyz"
USE_TZ = True
INSTALLED_APPS = {apps!r}
DATABASES = {{}}
TASKS = {{
    "default": {{
        "BACKEND": "{backend}",
        "QUEUES": ["default", "{queue}"],
        "OPTIONS": {{"URL": "{url}", "QUEUE_PREFIX": "tasks:"}},
    }}
}}
"""

TASKS = """
import json, os
from {module} import task
from {module}.signals import task_finished, task_started


@task(queue_name="{queue}")
def add(a, b):
    return {{"sum": a + b}}


@task(queue_name="{queue}")
def boom(text):
    raise ValueError(text)


@task(queue_name="{queue}", priority=10, takes_context=True)
def attempt(context):
    return context.attempt


@task(queue_name="{queue}")
def remember(ssn):
    return {{"ssn": ssn, "length": len(ssn)}}


def _record(name):
    def receiver(sender, task_result, **kwargs):
        with open(os.environ["SIGNALS_FILE"], "a") as out:
            out.write(json.dumps({{
                "signal": name,
                "sender": f"{{sender.__module__}}.{{sender.__qualname__}}",
                "task": task_result.task.name,
                "id": task_result.id,
                "status": str(task_result.status),
                "attempts": task_result.attempts,
                "value": task_result.return_value if task_result.status == "SUCCESSFUL" else None,
                "errors": [e.exception_class_path for e in task_result.errors],
            }}) + "\\n")
    return receiver


task_started.connect(_record("started"), weak=False)
task_finished.connect(_record("finished"), weak=False)
"""

ENQUEUE = """
import datetime, json, sys
import django
django.setup()
from django.utils import timezone
from project import tasks
calls = json.loads(sys.argv[1])
results = []
for name, args, kwargs, delay in calls:
    task = getattr(tasks, name)
    if delay:
        task = task.using(run_after=timezone.now() + datetime.timedelta(seconds=delay))
    results.append(task.enqueue(*args, **kwargs))
print(json.dumps([[r.id, r.status, r.args] for r in results]))
"""

READ = """
import json, sys
import django
django.setup()
from project import tasks
out = {}
for name, (task_name, result_id) in json.loads(sys.argv[1]).items():
    result = getattr(tasks, task_name).get_result(result_id)
    out[name] = {
        "status": str(result.status),
        "value": result.return_value if result.status == "SUCCESSFUL" else None,
        "errors": [[e.exception_class_path, e.traceback] for e in result.errors],
        "classes": [e.exception_class.__name__ for e in result.errors],
        "args": result.args,
        "kwargs": result.kwargs,
    }
print(json.dumps(out))
"""


@pytest.fixture
def project(
    server: Server, tmp_path: Path, queue: str, framework: Framework
) -> Iterator[dict[str, Any]]:
    package = tmp_path / "project"
    package.mkdir()
    (package / "__init__.py").write_text("")
    settings = SETTINGS.format(
        url=server.url, queue=queue, apps=framework.apps, backend=FLASHQ_BACKEND
    )
    (package / "settings.py").write_text(settings)
    (package / "tasks.py").write_text(TASKS.format(queue=queue, module=framework.module))
    env = server.worker_env()
    env["DJANGO_SETTINGS_MODULE"] = "project.settings"
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(PACKAGE_ROOT)])
    env["SIGNALS_FILE"] = str(tmp_path / "signals.jsonl")
    workers: list[subprocess.Popen[str]] = []
    yield {
        "env": env,
        "cwd": tmp_path,
        "workers": workers,
        "queue": f"tasks:{queue}",
        "python": framework.python,
        "signals": tmp_path / "signals.jsonl",
    }
    for worker in workers:
        if worker.poll() is None:
            worker.kill()
        worker.communicate(timeout=10)


def _python(project: dict[str, Any], code: str, *args: str, token: str | None = None) -> Any:
    env = project["env"] if token is None else {**project["env"], "FLASHQ_TOKEN": token}
    done = subprocess.run(  # noqa: S603 - our interpreter, our code
        [project["python"], "-c", code, *args],
        cwd=project["cwd"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _enqueue(project: dict[str, Any], *calls: tuple[str, list[Any], dict[str, Any], int]) -> Any:
    return _python(project, ENQUEUE, json.dumps(calls))


def _start_worker(project: dict[str, Any]) -> None:
    worker = subprocess.Popen(  # noqa: S603 - our interpreter, our module
        [
            project["python"],
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


def _read_when_finished(project: dict[str, Any], ids: dict[str, list[str]]) -> Any:
    def finished() -> bool:
        out = _python(project, READ, json.dumps(ids))
        return all(entry["status"] in ("SUCCESSFUL", "FAILED") for entry in out.values())

    wait_for(finished, timeout=30)
    return _python(project, READ, json.dumps(ids))


def test_a_task_is_enqueued_run_by_the_worker_and_its_result_read_back(
    project: dict[str, Any],
) -> None:
    (add_id, add_status, add_args), (boom_id, *_), (attempt_id, *_) = _enqueue(
        project, ("add", [2, 3], {}, 0), ("boom", ["no luck"], {}, 0), ("attempt", [], {}, 0)
    )
    assert (add_status, add_args) == ("READY", [2, 3])
    ids = {"add": ["add", add_id], "boom": ["boom", boom_id], "attempt": ["attempt", attempt_id]}
    assert _python(project, READ, json.dumps(ids))["add"]["status"] == "READY"  # not run yet

    _start_worker(project)
    out = _read_when_finished(project, ids)
    assert out["add"]["status"] == "SUCCESSFUL" and out["add"]["value"] == {"sum": 5}
    assert (out["add"]["errors"], out["add"]["args"]) == ([], [2, 3])
    assert out["attempt"]["status"] == "SUCCESSFUL" and out["attempt"]["value"] == 1
    boom = out["boom"]
    assert boom["status"] == "FAILED"
    # The exception's class and text, as the worker recorded them (every attempt).
    assert boom["errors"] and all(e == ["builtins.ValueError", "no luck"] for e in boom["errors"])


def test_the_worker_sends_task_started_and_task_finished(project: dict[str, Any]) -> None:
    (add_id, *_), (boom_id, *_) = _enqueue(
        project, ("add", [2, 3], {}, 0), ("boom", ["no luck"], {}, 0)
    )
    _start_worker(project)
    _read_when_finished(project, {"add": ["add", add_id], "boom": ["boom", boom_id]})
    sent = [json.loads(line) for line in project["signals"].read_text().splitlines()]
    assert {event["sender"] for event in sent} == {FLASHQ_BACKEND}
    add = [event for event in sent if event["id"] == add_id]
    assert [(e["signal"], e["status"], e["value"]) for e in add] == [
        ("started", "RUNNING", None),
        ("finished", "SUCCESSFUL", {"sum": 5}),
    ]
    boom = [event for event in sent if event["id"] == boom_id]
    # Each attempt started and finished, failed with the task's own exception.
    assert [e["signal"] for e in boom] == ["started", "finished"] * (len(boom) // 2)
    finished = [e for e in boom if e["signal"] == "finished"]
    assert finished and all(e["status"] == "FAILED" for e in finished)
    assert all(e["errors"][-1] == "builtins.ValueError" for e in finished)
    assert [e["attempts"] for e in finished] == list(range(1, len(finished) + 1))


def test_cancelled_and_expired_jobs_read_as_failed_with_their_reason(
    server: Server, project: dict[str, Any]
) -> None:
    [(later_id, status, _)] = _enqueue(project, ("add", [1, 1], {}, 3600))
    assert status == "READY"
    with server.client() as flashq:
        flashq.cancel(later_id)
        data = {"task": "project.tasks.add", "args": [1, 2], "kwargs": {}}
        expiring = flashq.push(project["queue"], data, ttl_ms=1)["id"]
        wait_for(lambda: flashq.get_job(expiring)["state"] == "expired", timeout=10)
    out = _python(
        project, READ, json.dumps({"cancelled": ["add", later_id], "expired": ["add", expiring]})
    )
    cancelled, expired = out["cancelled"], out["expired"]
    assert cancelled["status"] == "FAILED" and cancelled["classes"] == ["TaskCancelled"]
    assert cancelled["errors"][0][0] == "flashq_client.django_tasks.TaskCancelled"
    assert cancelled["errors"][0][1].startswith("cancelled")
    assert expired["status"] == "FAILED" and expired["classes"] == ["TaskExpired"]
    assert expired["errors"][0][1].startswith("expired")
    assert expired["args"] == [1, 2]


def test_masked_values_read_as_masked_for_a_token_without_reveal(
    server: Server, project: dict[str, Any]
) -> None:
    (remember_id, *_), (boom_id, *_) = _enqueue(
        project, ("remember", [], {"ssn": "123-45-6789"}, 0), ("boom", ["secret text"], {}, 0)
    )
    _start_worker(project)
    ids = {"remember": ["remember", remember_id], "boom": ["boom", boom_id]}
    revealed = _read_when_finished(project, ids)
    # The worker had the value in clear (pulls are never masked), as a reveal token reads it.
    assert revealed["remember"]["value"] == {"ssn": "123-45-6789", "length": 11}
    assert revealed["remember"]["kwargs"] == {"ssn": "123-45-6789"}

    reader = make_token(server.env, f"reader-{uuid.uuid4().hex[:8]}", "*=*")
    masked = _python(project, READ, json.dumps(ids), token=reader)
    remember = masked["remember"]
    assert remember["status"] == "SUCCESSFUL"
    assert remember["kwargs"] == {"ssn": "[MASKED]"}
    assert remember["value"] == {"ssn": "[MASKED]", "length": 11}
    boom = masked["boom"]
    assert boom["status"] == "FAILED" and boom["errors"]
    for path, text in boom["errors"]:
        assert path == "flashq_client.django_tasks.TaskFailed"
        assert "masked" in text and "reveal" in text and "secret text" not in text
