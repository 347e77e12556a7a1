"""flashQ admin page timings (issue 22): every admin page's server time with a big
jobs table and a big audit trail, on PostgreSQL, for a superuser and for an operator
granted one queue.

    .venv/bin/python bench/adminpages.py [--jobs 100000] [--events 100000] [--reuse]

It recreates a scratch database (``ADMINPAGES_DATABASE_URL``, default
``postgres://postgres@127.0.0.1:5432/flashq_adminpages``), migrates it and fills it
through the production server (gunicorn, bench/run.py's helpers), as clients would:
jobs pushed in batches over five queues, most pulled and acked, some failed with a
multi-line error, some left active or delayed. The audit trail gets one event per call;
``getJob`` calls by a token top it up to ``--events`` (written in-process through the
audit service, the way the API's read calls write them, to save minutes) and
``audit_seal`` chains it. ``--reuse`` keeps the last fill (its environment is kept in
``bench/results/adminpages-env.json``, which holds the scratch keys and is not in git).

Then, in this process, Django's test client (logged in, no network) asks for every
admin page it can name: the index, each registered model's list, add, change and
history pages (the first object), the parameterless admin pages (dashboard data,
access review, ...) and job lists as operators filter them. Each page is asked once to
warm up and then ``--repeat`` times; the table shows the median and the worst server
time, the status and the number of SQL queries, with SLOW past ``--budget`` (500 ms).
The figures go to ``bench/results/<timestamp>-adminpages.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

if __package__ in (None, ""):  # run as a script: bench/run.py is importable as bench.run
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import run as bench

DEFAULT_DATABASE_URL = f"postgres://postgres@{bench.HOST}:5432/flashq_adminpages"
ENV_FILE = bench.RESULTS / "adminpages-env.json"
QUEUES = ("mail", "mail:eu", "billing", "reports", "jobs:q")
OPERATOR_QUEUE = "jobs:q"
PASSWORD = "adminpages-bench-password"  # noqa: S105 (a scratch database's bench user)
ERROR_TEXT = "Traceback (most recent call last):\n  File worker.py, line 12\nValueError: bad"


@dataclass
class Config:
    jobs: int
    events: int
    repeat: int
    budget_ms: float
    reuse: bool
    threads: int


def parse_config(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--budget", type=float, default=500.0, help="ms per page")
    parser.add_argument("--threads", type=int, default=4, help="clients filling the tables")
    parser.add_argument("--reuse", action="store_true", help="keep the last fill")
    args = parser.parse_args(argv)
    return Config(args.jobs, args.events, args.repeat, args.budget, args.reuse, args.threads)


# -- the fill -----------------------------------------------------------------------------


def spread(server: bench.Server, threads: int, items: list[Any], work: Any) -> None:
    """``work(client, item)`` for every item, over ``threads`` keep-alive clients."""
    lock, todo = threading.Lock(), list(items)

    def run() -> None:
        with server.client() as client:
            while True:
                with lock:
                    if not todo:
                        return
                    item = todo.pop()
                work(client, item)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def _call(client: bench.Client, path: str, body: Any, expect: int) -> Any:
    status, raw = client.post(path, body)
    if status != expect:
        sys.exit(f"POST {path} -> {status}: {raw.decode(errors='replace')[:300]}")
    return json.loads(raw) if raw else None


def fill(server: bench.Server, cfg: Config) -> dict[str, int]:
    """Jobs through the API: per queue, 60 % completed, 10 % failed (a multi-line
    error, then retried by nobody), 5 % active (a long lease), 5 % delayed, the rest
    waiting. Returns how many calls each step made."""
    per_queue = cfg.jobs // len(QUEUES)
    batches = [(queue, start) for queue in QUEUES for start in range(0, per_queue, 1000)]
    calls = {"push": 0, "pull": 0, "fail": 0}

    def push(client: bench.Client, item: tuple[str, int]) -> None:
        queue, start = item
        size = min(1000, per_queue - start)
        jobs = []
        for n in range(start, start + size):
            job: dict[str, Any] = {
                "data": {"userId": f"u{n % 997}", "n": n, "note": "x" * 40},
                "subject": f"user-{n % 997}",
                "tags": [f"t{n % 7}"],
            }
            if n % 20 == 19:  # 5 % delayed an hour
                job["delay"] = 3_600_000
            jobs.append(job)
        _call(client, f"/api/v1/queues/{queue}/jobs/batch", {"jobs": jobs}, 201)
        calls["push"] += 1

    spread(server, cfg.threads, batches, push)

    def work(client: bench.Client, queue: str) -> None:
        # The due jobs: 95 % of the queue. Of them, 60/95 acked, 10/95 failed, 5/95
        # kept active, the rest left waiting (ordered by the pull's own order).
        due = per_queue - per_queue // 20
        plan = [("ack", per_queue * 60 // 100), ("fail", per_queue // 10)]
        plan.append(("hold", per_queue // 20))
        left = due
        for what, count in plan:
            count = min(count, left)
            left -= count
            while count > 0:
                take = min(100, count)
                lease = 3600 if what == "hold" else 120
                body = {"count": take, "lease": lease}
                jobs = _call(client, f"/api/v1/queues/{queue}/pull", body, 200)["jobs"]
                calls["pull"] += 1
                if not jobs:
                    break
                count -= len(jobs)
                if what == "ack":
                    acks = [{"id": j["id"], "lease_id": j["lease_id"]} for j in jobs]
                    _call(client, "/api/v1/jobs/ack", {"jobs": acks}, 200)
                elif what == "fail":
                    for job in jobs:
                        failure: dict[str, Any] = {
                            "lease_id": job["lease_id"],
                            "error": ERROR_TEXT,
                            "code": "ValueError",
                            "retry": False,
                        }
                        _call(client, f"/api/v1/jobs/{job['id']}/fail", failure, 200)
                        calls["fail"] += 1

    spread(server, len(QUEUES), list(QUEUES), work)
    return calls


TOP_UP = """
import itertools
from django.db import transaction
from compliance.audit import Action, Actor, audit_record
from compliance.audit.models import AuditEvent
from queues.models import Job
want = {want}
have = AuditEvent.objects.count()
ids = list(Job.objects.values_list("id", "queue__name")[:5000])
actor = Actor.command("adminpages-bench")
pairs = itertools.cycle(ids)
while have < want:
    with transaction.atomic():
        for _ in range(min(2000, want - have)):
            job_id, queue = next(pairs)
            audit_record(actor=actor, action=Action.GET_JOB, queue=queue, job_ids=[job_id])
            have += 1
print(have)
"""

# Eight days of per-minute history for every queue (what FLASHQ_STATS_DAYS keeps), one
# folded row per queue and minute, so the 7 d charts read what a week of traffic leaves.
HISTORY = """
INSERT INTO queues_jobminute (queue_id, minute, stripe, pushed, completed, failed, retried,
    run_ms, {buckets})
SELECT q.id, m, 0, 100, 90, 5, 3, 9000, {values}
FROM queues_queue q,
     generate_series(date_trunc('minute', now()) - interval '8 days',
                     date_trunc('minute', now()) - interval '10 minutes',
                     interval '1 minute') AS m
ON CONFLICT DO NOTHING
"""

PEOPLE = """
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from compliance.audit import Actor
from queues.services import queue_grant
User = get_user_model()
root = User.objects.create_superuser("bench-root", "root@example.invalid", {password!r})
op = User.objects.create_user("bench-operator", "op@example.invalid", {password!r}, is_staff=True)
op.groups.add(Group.objects.get(name="Operators"))
for role in ("operator", "revealer"):
    queue_grant(queue_name={queue!r}, role=role, grantee=op, actor=Actor.command("bench"))
"""


def environment(url: str, cfg: Config) -> dict[str, str]:
    """The app's environment (production settings); a reused fill keeps its keys."""
    env = bench.app_environment(url)
    env["ALLOWED_HOSTS"] = "127.0.0.1,localhost,testserver"
    env["STATIC_ROOT"] = str(bench.RESULTS / "adminpages-static")
    if cfg.reuse and ENV_FILE.exists():
        return {**env, **json.loads(ENV_FILE.read_text())}
    keep = ("DATABASE_URL", "SECRET_KEY", "TOKEN_PEPPER", "ENCRYPTION_KEYS", "AUDIT_CHAIN_KEY")
    bench.RESULTS.mkdir(parents=True, exist_ok=True)
    ENV_FILE.write_text(json.dumps({name: env[name] for name in keep}))
    ENV_FILE.chmod(0o600)
    return env


def prepare(url: str, cfg: Config, env: dict[str, str]) -> dict[str, Any]:
    """Recreate, migrate and fill the database; what it took."""
    bench.ensure_postgres(url)
    bench.recreate_database(url)
    bench.manage(env, "migrate", "--no-input")
    bench.manage(env, "setup_roles")
    token = bench.create_token(env)
    started = time.monotonic()
    log = bench.RESULTS / "adminpages-gunicorn.log"
    run_cfg = bench.parse_config(["--quick"])
    with bench.gunicorn(env, run_cfg, token, log) as server:
        calls = fill(server, cfg)
    filled = time.monotonic() - started
    events = bench.manage(env, "shell", "-c", TOP_UP.format(want=cfg.events)).strip()
    bench.manage(env, "audit_seal")
    buckets = [f"h{n:02}" for n in range(24)]
    values = ["60" if n == 6 else "30" if n == 7 else "0" for n in range(24)]
    history = HISTORY.format(buckets=", ".join(buckets), values=", ".join(values))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(history)
    people = PEOPLE.format(password=PASSWORD, queue=OPERATOR_QUEUE)
    bench.manage(env, "shell", "-c", people)
    for table in ("queues_job", "compliance_auditevent"):
        bench.analyze(url, table)
    return {
        "fill_seconds": round(filled, 1),
        "calls": calls,
        "audit_events": int(events.splitlines()[-1]),
    }


# -- the timings --------------------------------------------------------------------------


@dataclass
class Page:
    persona: str
    name: str
    path: str
    status: int
    queries: int
    median_ms: float
    worst_ms: float


def _parameterless(patterns: Any) -> list[str]:
    """Names of the admin URLs that take no argument (custom pages, JSON endpoints)."""
    from django.urls import URLPattern, URLResolver

    names: list[str] = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            names += _parameterless(pattern.url_patterns)
        elif isinstance(pattern, URLPattern) and pattern.name and "<" not in str(pattern.pattern):
            names.append(pattern.name)
    return names


# Pages that are not pages: a stream that never ends, a logout, a download of the
# whole trail (timed as the export page's form instead), the JavaScript i18n catalog.
SKIP = {"events_stream", "logout", "jsi18n", "view_on_site", "autocomplete"}


def pages(job_id: str, failed_id: str) -> list[tuple[str, str]]:
    """(name, path) of every admin page to time."""
    from django.contrib import admin
    from django.urls import NoReverseMatch, reverse

    from queues.models import Queue

    found: list[tuple[str, str]] = [("index", reverse("admin:index"))]
    for model in admin.site._registry:
        meta = model._meta
        base = f"admin:{meta.app_label}_{meta.model_name}"
        found.append((f"{meta.label} list", reverse(f"{base}_changelist")))
        found.append((f"{meta.label} add", reverse(f"{base}_add")))
        obj = model._default_manager.order_by("pk").first()
        if obj is not None:
            found.append((f"{meta.label} change", reverse(f"{base}_change", args=[obj.pk])))
            found.append((f"{meta.label} history", reverse(f"{base}_history", args=[obj.pk])))
    seen = {path for _, path in found}
    for name in _parameterless(admin.site.get_urls()):
        if name in SKIP or name.endswith(("_changelist", "_add")):
            continue
        try:
            path = reverse(f"admin:{name}")
        except NoReverseMatch:
            continue
        if path not in seen:
            seen.add(path)
            found.append((name, path))
    jobs = reverse("admin:queues_job_changelist")
    one_queue = f"queue__id__exact={Queue.objects.get(name=OPERATOR_QUEUE).pk}"
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0).isoformat()
    found += [
        ("jobs: failed", f"{jobs}?state__exact=failed"),
        ("jobs: active", f"{jobs}?state__exact=active"),
        ("jobs: one queue, waiting", f"{jobs}?{one_queue}&state__exact=waiting"),
        ("jobs: search by id", f"{jobs}?q={job_id}"),
        ("jobs: finished today", f"{jobs}?finished_at__gte={day}"),
        ("jobs: oldest first", f"{jobs}?o=-1"),
        ("jobs: failed job page", reverse("admin:queues_job_change", args=[failed_id])),
        ("charts 24 h", f"{reverse('admin:charts')}?range=24h"),
        ("charts 7 d", f"{reverse('admin:charts')}?range=7d"),
    ]
    return found


def time_pages(cfg: Config) -> list[Page]:
    import django
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    django.setup()
    from queues.models import Job, JobState

    # A refused filter (400) is a figure here, not a traceback on the console.
    logging.getLogger("django.request").setLevel(logging.CRITICAL)
    logging.getLogger("flashq.audit").setLevel(logging.WARNING)

    users = get_user_model().objects
    personas = {
        "superuser": users.get(username="bench-root"),
        "operator": users.get(username="bench-operator"),
    }
    job_id = str(Job.objects.order_by("-id").values_list("id", flat=True).first())
    failed = Job.objects.filter(state=JobState.FAILED).values_list("id", flat=True).first()
    results: list[Page] = []
    for persona, user in personas.items():
        client = Client()
        client.force_login(user)
        for name, path in pages(job_id, str(failed)):
            response = client.get(path)  # warm: templates, caches, the plan
            times: list[float] = []
            for _ in range(cfg.repeat):
                with CaptureQueriesContext(connection) as queries:
                    started = time.perf_counter()
                    response = client.get(path)
                    times.append((time.perf_counter() - started) * 1000)
            page = Page(
                persona,
                name,
                path,
                response.status_code,
                len(queries.captured_queries),
                round(statistics.median(times), 1),
                round(max(times), 1),
            )
            results.append(page)
            print(render_row(page, cfg), flush=True)
    return results


def render_row(page: Page, cfg: Config) -> str:
    verdict = "SLOW" if page.worst_ms > cfg.budget_ms else "ok"
    return (
        f"{page.persona:<10} {page.name[:44]:<44} {page.status:>4} {page.queries:>4} q "
        f"{page.median_ms:>8.1f} {page.worst_ms:>8.1f} ms  {verdict}"
    )


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(argv)
    url = bench.database_url("ADMINPAGES_DATABASE_URL", DEFAULT_DATABASE_URL)
    env = environment(url, cfg)
    fill_figures: dict[str, Any] = {"reused": True}
    if not (cfg.reuse and ENV_FILE.exists()):
        print(f"Filling {url} with {cfg.jobs} jobs and {cfg.events} audit events ...")
        fill_figures = prepare(url, cfg, env)
        print(f"filled: {fill_figures}")
    bench.manage(env, "collectstatic", "--no-input")  # production settings: the manifest
    os.environ.update({key: value for key, value in env.items() if key.isupper()})
    print(f"{'persona':<10} {'page':<44} {'code':>4} {'sql':>6} {'median':>8} {'worst':>8}")
    results = time_pages(cfg)
    slow = [page for page in results if page.worst_ms > cfg.budget_ms]
    errors = [page for page in results if page.status >= 500]
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out = bench.RESULTS / f"{stamp}-adminpages.json"
    out.write_text(
        json.dumps(
            {"config": asdict(cfg), "fill": fill_figures, "pages": [asdict(p) for p in results]},
            indent=2,
        )
    )
    worst = max(results, key=lambda page: page.worst_ms)
    print(
        f"{len(results)} pages; worst {worst.worst_ms} ms ({worst.persona}: {worst.name}); "
        f"{len(slow)} over {cfg.budget_ms:.0f} ms; {len(errors)} server errors; {out}"
    )
    sys.exit(1 if slow or errors else 0)


if __name__ == "__main__":
    main()
