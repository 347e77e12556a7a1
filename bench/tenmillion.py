"""flashQ at ten million jobs (issue 24): push, batch push and pull + ack on an empty
jobs table and then on one of ``--rows`` jobs, and retention removing a day of finished
jobs while single pushes run.

    .venv/bin/python bench/soak.py --rows 10000000     # or bench/tenmillion.py --rows N

It recreates a scratch database (``ROWS_DATABASE_URL``, default
``postgres://postgres@127.0.0.1:5432/flashq_soak_rows``), migrates it, creates a token,
sets a 6-day retention policy for completed and failed jobs of ``bench-*`` and serves
the app with gunicorn (bench/run.py's helpers, production settings). Then:

1. Empty table: single push (8 threads), batch push (1,000 jobs, 2 threads) and, over
   ``--waiting`` jobs pushed first, pull + piggy-backed ack (100 a pull, 4 threads),
   each for ``--seconds``.
2. The jobs table is emptied and loaded straight in SQL (``INSERT ... SELECT
   generate_series``, 1M rows a statement) with ``--rows`` minus ``--waiting`` finished
   jobs (90 % completed, 10 % failed, finished over the last 7 days, half keyed), over
   four ``bench-*`` queues; every row is a copy of a job the app itself finished (pushed,
   pulled, acked with a result or failed with an error), so its sealed bytes are real
   (the same ones in every row: sealed for the template's id, never opened here). The
   load runs with triggers off (``session_replication_role = replica``): it writes no
   job events, rollup counts or audit rows, which only history needs. Then
   ``--waiting`` jobs are pushed to ``bench-pull`` over HTTP (batches of 1,000: real
   sealed payloads, as pulls open them), and the table is ``VACUUM (ANALYZE)``d.
3. The three measures again, same threads and seconds: the ratio to the empty table is
   the figure (target >= 0.85).
4. ``bench/hotplans.py`` (in-process, through the Django test client) runs a push, a
   batch push, a pull with piggy-backed acks and one retention batch, captures their
   SQL on ``queues_job`` and ``EXPLAIN (ANALYZE, BUFFERS)`` each, rolled back.
5. Single pushes offered open-loop at ``--push-rate`` a second (16 connections; each
   latency counted from when it was due, so a stall is charged in full) for
   ``--baseline`` seconds, then while ``manage.py retention_cleanup`` deletes the day
   that is due (a seventh of the finished jobs), then 5 s more. Target: the worst push
   during retention <= 100 ms. Then sizes after retention and after a ``VACUUM``.

It prints a table with PASS/BELOW verdicts and writes the figures to
``bench/results/<timestamp>-rows.json`` (gunicorn's log beside it). The scratch database
is dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import re
import sys
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

if __package__ in (None, ""):  # run as a script: bench/run.py is importable as bench.run
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import run as bench

DEFAULT_DATABASE_URL = f"postgres://postgres@{bench.HOST}:5432/flashq_soak_rows"
SINGLE_QUEUE, BATCH_QUEUE, PULL_QUEUE = "bench-single", "bench-batch", "bench-pull"
ARCHIVE_QUEUE, TEMPLATE_QUEUE = "bench-archive", "bench-template"
LOADED_QUEUES = (SINGLE_QUEUE, BATCH_QUEUE, PULL_QUEUE, ARCHIVE_QUEUE)
RETENTION_DAYS = 6  # finished over the last 7 days: the oldest day is due
SPREAD_DAYS = 7
CHUNK = 1_000_000
RATIO_TARGET = 0.85
PAUSE_TARGET_MS = 100.0
MB = 1024 * 1024
DELETED_RE = re.compile(r"Deleted (\d+) job\(s\) in all\.")
SIZES = """
    SELECT pg_relation_size(c.oid), pg_indexes_size(c.oid), pg_total_relation_size(c.oid),
           c.reltuples::bigint
    FROM pg_class c WHERE c.relname = 'queues_job'
"""
INDEX_SIZES = """
    SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes
    WHERE relname = 'queues_job' ORDER BY indexrelname
"""
# What the loaded rows take from their template (a job the app finished) and what each
# row gets of its own: i is the row's number, f its finish time, t the template.
OWN_COLUMNS = {
    "id": "(lpad(to_hex(floor(extract(epoch FROM f.created) * 1000)::bigint), 12, '0') "
    "|| '7' || substr(md5(g.i::text), 1, 3) || '8' || substr(md5(g.i::text), 4, 15))::uuid",
    "queue_id": "(%(queue_ids)s::bigint[])[1 + g.i %% 4]",
    "key": "CASE WHEN g.i %% 2 = 0 THEN md5('k' || g.i) END",
    "run_at": "f.created",
    "created_at": "f.created",
    "started_at": "f.finished - (g.i %% 1000) * interval '1 millisecond'",
    "finished_at": "f.finished",
    "failed_at": "CASE WHEN t.state = 'failed' THEN f.finished END",
}
LOAD = """
    INSERT INTO queues_job ({columns})
    SELECT {values}
    FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g(i)
    CROSS JOIN LATERAL (
        SELECT now() - %(spread)s * interval '1 day'
                   + (g.i - 0.5) / %(total)s * %(spread)s * interval '1 day' AS finished,
               now() - %(spread)s * interval '1 day'
                   + (g.i - 0.5) / %(total)s * %(spread)s * interval '1 day'
                   - (30 + g.i %% 60) * interval '1 second' AS created) AS f
    JOIN queues_job AS t
      ON t.id = CASE WHEN g.i %% 10 = 0 THEN %(failed)s::uuid ELSE %(completed)s::uuid END
"""


@dataclass(frozen=True)
class RowsConfig:
    rows: int
    waiting: int
    seconds: float
    push_rate: int
    baseline: float
    workers: int
    keep: bool


def parse_config(argv: list[str] | None = None) -> RowsConfig:
    parser = argparse.ArgumentParser(
        description="flashQ at N jobs: rates against an empty table, retention's pauses"
    )
    parser.add_argument("--rows", type=int, required=True, help="jobs in the loaded table")
    parser.add_argument(
        "--waiting", type=int, default=100_000, help="waiting jobs (the pull + ack backlog)"
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per measure")
    parser.add_argument(
        "--push-rate", type=int, default=100, help="single pushes offered a second (retention)"
    )
    parser.add_argument(
        "--baseline", type=float, default=15.0, help="seconds of pushes before retention"
    )
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args(argv)
    if args.rows < 10 * args.waiting or args.waiting < 1000:
        parser.error("need --waiting >= 1000 and --rows >= 10 x --waiting")
    return RowsConfig(
        rows=args.rows,
        waiting=args.waiting,
        seconds=args.seconds,
        push_rate=args.push_rate,
        baseline=args.baseline,
        workers=args.workers,
        keep=args.keep,
    )


def set_policies(env: dict[str, str]) -> None:
    """Completed and failed jobs of ``bench-*`` kept RETENTION_DAYS, through the service."""
    code = (
        "from compliance.audit import Actor; from compliance.models import RetentionPolicy; "
        "from compliance.retention import retention_policy_save; "
        f"[retention_policy_save(policy=RetentionPolicy(queue_pattern='bench-*', target=t, "
        f"max_age_days={RETENTION_DAYS}), actor=Actor.command('rows')) "
        "for t in ('completed', 'failed')]"
    )
    bench.manage(env, "shell", "-c", code)


# -- the three measures ----------------------------------------------------------------


def bench_config(cfg: RowsConfig) -> bench.Config:
    """run.py's Config with this run's threads and seconds: counts are a ceiling never
    reached, the time limit ends each measure."""
    return dataclasses.replace(
        bench.parse_config([]),
        single_requests=10**9,
        batches=10**9,
        pull_jobs=cfg.waiting,
        workers=cfg.workers,
        time_limit=cfg.seconds,
    )


def push_waiting(server: bench.Server, cfg: RowsConfig) -> None:
    """``--waiting`` jobs pushed to the pull queue through the batch route (untimed)."""
    bcfg = dataclasses.replace(bench_config(cfg), time_limit=3600.0)
    loaded = bench.http_push_batches(server, bcfg, PULL_QUEUE, -(-cfg.waiting // 1000))
    if loaded.errors:
        sys.exit(f"pushing the waiting jobs failed: {loaded.error_samples}")


def measure_three(server: bench.Server, url: str, cfg: RowsConfig) -> dict[str, Any]:
    bcfg = bench_config(cfg)
    bench.analyze(url, "queues_job")
    print(f"  single push, {bcfg.single_threads} threads, {cfg.seconds:g} s", flush=True)
    single = bench.http_single_push(server, bcfg, SINGLE_QUEUE, bcfg.single_requests)
    print(f"  batch push, {bcfg.batch_threads} threads, {cfg.seconds:g} s", flush=True)
    batch = bench.http_push_batches(server, bcfg, BATCH_QUEUE, bcfg.batches)
    print(f"  pull + ack, {bcfg.pull_threads} threads, {cfg.seconds:g} s", flush=True)
    pull = bench.http_pull_ack(server, dataclasses.replace(bcfg, pull_count=100))
    figures = {bench.SINGLE: single, bench.BATCH: batch, bench.PULL: pull}
    return {name: {**asdict(f), "rate": round(f.rate, 1)} for name, f in figures.items()}


# -- the load ---------------------------------------------------------------------------


def finish_templates(server: bench.Server) -> dict[str, str]:
    """Two jobs the app itself finishes: one acked with a result, one failed for good."""
    with server.client() as client:
        for n in range(2):
            body = {**bench.job_body(n), "max_attempts": 1}
            status, raw = client.post(f"/api/v1/queues/{TEMPLATE_QUEUE}/jobs", body)
            assert status == 201, raw
        status, raw = client.post(f"/api/v1/queues/{TEMPLATE_QUEUE}/pull", {"count": 2})
        assert status == 200, raw
        completed, failed = json.loads(raw)["jobs"]
        done = {"lease_id": completed["lease_id"], "result": {"ok": True, "rows": 1000}}
        status, raw = client.post(f"/api/v1/jobs/{completed['id']}/ack", done)
        assert status in (200, 204), raw
        fail = {"lease_id": failed["lease_id"], "error": "upstream timed out", "code": "timeout"}
        status, raw = client.post(f"/api/v1/jobs/{failed['id']}/fail", fail)
        assert status in (200, 204), raw
    return {"completed": completed["id"], "failed": failed["id"]}


def load_finished(url: str, templates: dict[str, str], finished: int) -> float:
    """``finished`` jobs copied from the templates, in id (= time) order, a million a
    statement; the seconds it took."""
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        columns = [
            row[0]
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'queues_job' ORDER BY ordinal_position"
            )
        ]
        queue_ids = [
            conn.execute("SELECT id FROM queues_queue WHERE name = %s", [name]).fetchone()[0]  # type: ignore[index]
            for name in LOADED_QUEUES
        ]
        values = ", ".join(OWN_COLUMNS.get(column, f"t.{column}") for column in columns)
        statement = LOAD.format(columns=", ".join(columns), values=values)
        conn.execute("SET session_replication_role = replica")  # no triggers: see above
        for first in range(1, finished + 1, CHUNK):
            last = min(first + CHUNK - 1, finished)
            params = {
                "first": first,
                "last": last,
                "total": finished,
                "spread": SPREAD_DAYS,
                "queue_ids": queue_ids,
                **templates,
            }
            conn.execute(statement, params)
            print(
                f"  {last:,} of {finished:,} finished jobs ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    return time.perf_counter() - started


def queue_id(url: str, name: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT id FROM queues_queue WHERE name = %s", [name]).fetchone()
    assert row is not None, name
    return int(row[0])


def vacuum(url: str) -> float:
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) queues_job")
    return time.perf_counter() - started


def sizes(url: str) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        table, indexes, total, reltuples = conn.execute(SIZES).fetchone()  # type: ignore[misc]
        states: dict[str, int] = dict(
            conn.execute("SELECT state, count(*) FROM queues_job GROUP BY 1 ORDER BY 1").fetchall()
        )
        index_bytes: dict[str, int] = dict(conn.execute(INDEX_SIZES).fetchall())
        free = conn.execute("SELECT coalesce(sum(avail), 0) FROM pg_freespace('queues_job')")
    return {
        "free_bytes": int(free.fetchone()[0]),  # type: ignore[index]
        "table_bytes": table,
        "indexes_bytes": indexes,
        "total_bytes": total,
        "reltuples": reltuples,
        "rows": sum(states.values()),
        "states": states,
        "index_bytes": index_bytes,
    }


# -- plans ------------------------------------------------------------------------------


def hot_plans(env: dict[str, str], token: str) -> list[dict[str, Any]]:
    code = "import bench.hotplans as h; h.main()"
    out = bench.manage({**env, "ROWS_BENCH_TOKEN": token}, "shell", "-c", code)
    return json.loads(out.rsplit("\n@@plans@@\n", 1)[1])  # type: ignore[no-any-return]


# -- retention under pushes -------------------------------------------------------------


@dataclass
class Pushes:
    """Single pushes offered open-loop: (due, latency ms, ok) of each."""

    samples: list[tuple[float, float, bool]] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)


def offer_pushes(server: bench.Server, rate: int, stop: threading.Event) -> Pushes:
    """Run in a thread: 16 connections push as offered until ``stop``."""
    pushes = Pushes()
    due = itertools.count()
    lock = threading.Lock()
    started = time.perf_counter()
    path = f"/api/v1/queues/{SINGLE_QUEUE}/jobs"

    def work() -> None:
        with server.client() as client:
            while not stop.is_set():
                n = next(due)
                scheduled = started + n / rate
                pause = scheduled - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                status, raw = client.post(path, bench.job_body(n))
                latency = (time.perf_counter() - scheduled) * 1000
                with lock:
                    pushes.samples.append((scheduled, latency, status == 201))
                    if status != 201 and len(pushes.errors) < 3:
                        pushes.errors.append(f"{status}: {raw[:200]!r}")

    threading.Thread(target=bench.run_threads, args=(16, work), daemon=True).start()
    return pushes


def window(pushes: Pushes, begin: float, end: float) -> dict[str, Any]:
    inside = [(ms, ok) for at, ms, ok in list(pushes.samples) if begin <= at < end]
    latencies = [ms for ms, _ in inside]
    return {
        "pushes": len(inside),
        "failed": sum(1 for _, ok in inside if not ok),
        "p50_ms": round(bench.percentile(latencies, 50), 1),
        "p99_ms": round(bench.percentile(latencies, 99), 1),
        "p999_ms": round(bench.percentile(latencies, 99.9), 1),
        "max_ms": round(max(latencies, default=0.0), 1),
        "over_100ms": sum(1 for ms in latencies if ms > PAUSE_TARGET_MS),
    }


def retention_under_pushes(
    server: bench.Server, env: dict[str, str], cfg: RowsConfig
) -> dict[str, Any]:
    stop = threading.Event()
    pushes = offer_pushes(server, cfg.push_rate, stop)
    time.sleep(cfg.baseline)
    begin = time.perf_counter()
    print("  retention_cleanup ...", flush=True)
    out = bench.manage(env, "retention_cleanup")
    end = time.perf_counter()
    time.sleep(5)
    stop.set()
    time.sleep(1)
    match = DELETED_RE.search(out)
    return {
        "seconds": round(end - begin, 1),
        "deleted": int(match.group(1)) if match else None,
        "output": out.strip().splitlines()[-6:],
        "offered_per_s": cfg.push_rate,
        "before": window(pushes, begin - cfg.baseline, begin),
        "during": window(pushes, begin, end),
        "after": window(pushes, end, end + 5),
        "errors": pushes.errors,
    }


# -- the report -------------------------------------------------------------------------


def mb(size: int) -> str:
    return f"{size / MB:,.0f}"


def render(report: dict[str, Any]) -> str:
    empty, full = report["empty"], report["loaded"]
    rows = report["config"]["rows"]
    lines = [
        f"{'measure':<14}{'empty':>12}{f'{rows:,} rows':>16}{'ratio':>8}  verdict (>= 0.85)",
        "-" * 68,
    ]
    for name in (bench.SINGLE, bench.BATCH, bench.PULL):
        a, b = empty[name], full[name]
        ratio = b["rate"] / a["rate"] if a["rate"] else 0.0
        verdict = "PASS" if ratio >= RATIO_TARGET else "BELOW"
        lines.append(
            f"{name:<14}{a['rate']:>9,.0f} {a['unit']:<3}{b['rate']:>12,.0f} {b['unit']:<3}"
            f"{ratio:>7.2f}x  {verdict}"
            f"  (p99 {a['p99_ms']:.0f} -> {b['p99_ms']:.0f} ms)"
        )
    ret = report["retention"]
    before, during = ret["before"], ret["during"]
    verdict = "PASS" if during["max_ms"] <= PAUSE_TARGET_MS and not during["failed"] else "BELOW"
    lines += [
        "",
        f"retention: {ret['deleted']:,} jobs deleted in {ret['seconds']:.1f} s "
        f"(retention_cleanup, batches of 1000)",
        f"single pushes offered at {ret['offered_per_s']}/s, latency from when due:",
    ]
    for label in ("before", "during", "after"):
        w = ret[label]
        lines.append(
            f"  {label:<7} {w['pushes']:>6} pushes, {w['failed']} failed, p50 {w['p50_ms']} ms,"
            f" p99 {w['p99_ms']} ms, p99.9 {w['p999_ms']} ms, max {w['max_ms']} ms, "
            f"{w['over_100ms']} over 100 ms"
        )
    lines.append(
        f"worst push during retention <= 100 ms: {verdict}  ({during['max_ms']} ms; "
        f"before retention {before['max_ms']} ms)"
    )
    lines += ["", f"{'queues_job':<28}{'loaded':>10}{'retained':>10}{'vacuumed':>10}"]
    shots = [report["sizes"][k] for k in ("loaded", "after_retention", "after_vacuum")]
    lines.append(f"{'rows':<28}" + "".join(f"{s['rows']:>10,}" for s in shots))
    for key in ("table_bytes", "indexes_bytes", "total_bytes"):
        label = key.replace("_bytes", " MB")
        lines.append(f"{label:<28}" + "".join(f"{mb(s[key]):>10}" for s in shots))
    for name in shots[0]["index_bytes"]:
        lines.append(
            f"  {name:<26}" + "".join(f"{mb(s['index_bytes'].get(name, 0)):>10}" for s in shots)
        )
    lines.append(
        f"{'free (reusable) MB':<28}" + "".join(f"{mb(s['free_bytes']):>10}" for s in shots)
    )
    # The deleted rows' share of the loaded heap: what VACUUM should hand back for reuse.
    share = (shots[0]["rows"] - shots[1]["rows"] + ret["during"]["pushes"]) / shots[0]["rows"]
    due = share * shots[0]["table_bytes"]
    reusable = shots[2]["free_bytes"] >= 0.8 * due
    lines.append(
        f"bounded: after VACUUM {mb(shots[2]['free_bytes'])} MB free for new rows, "
        f">= 80% of the deleted rows' {mb(int(due))} MB: {'PASS' if reusable else 'BELOW'}"
    )
    lines += ["", "plans at the loaded table (EXPLAIN ANALYZE, rolled back):"]
    for plan in report["plans"]:
        lines.append(
            f"  {plan['label']:<22} {plan['ms']:>8.2f} ms  {', '.join(plan['scans']) or '-'}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    bench.RESULTS.mkdir(parents=True, exist_ok=True)
    url = bench.database_url("ROWS_DATABASE_URL", DEFAULT_DATABASE_URL)
    bench.ensure_postgres(url)
    bench.recreate_database(url)
    env = bench.app_environment(url)
    print("Migrating the scratch database ...", flush=True)
    bench.manage(env, "migrate", "--noinput")
    token = bench.create_token(env)
    set_policies(env)
    with psycopg.connect(url, autocommit=True) as conn:  # the table's free space, reported
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_freespacemap")
    report: dict[str, Any] = {"time": stamp, "commit": bench.git_commit(), "config": asdict(cfg)}
    log = bench.RESULTS / f"{stamp}-rows-gunicorn.log"
    server_cfg = dataclasses.replace(bench.parse_config([]), workers=cfg.workers)
    try:
        with bench.gunicorn(env, server_cfg, token, log) as server:
            warm = bench.http_single_push(server, bench_config(cfg), bench.WARMUP_QUEUE, 200)
            if warm.errors:
                sys.exit(f"warm-up failed: {warm.error_samples}")
            templates = finish_templates(server)
            for name in LOADED_QUEUES:  # the queues exist before the measures
                bench.http_single_push(server, bench_config(cfg), name, 1)
            print(f"empty table: pushing {cfg.waiting:,} waiting jobs, then measuring", flush=True)
            push_waiting(server, cfg)
            report["empty"] = measure_three(server, url, cfg)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("SET flashq.events = 'off'")  # no 'removed' events for these
                conn.execute(
                    "DELETE FROM queues_job WHERE id <> ALL(%s::uuid[])", [list(templates.values())]
                )
            vacuum(url)
            finished = cfg.rows - cfg.waiting
            print(f"loading {finished:,} finished jobs straight into the table ...", flush=True)
            report["load_seconds"] = round(load_finished(url, templates, finished), 1)
            print(f"pushing {cfg.waiting:,} waiting jobs over HTTP ...", flush=True)
            push_waiting(server, cfg)
            print("VACUUM (ANALYZE) ...", flush=True)
            report["vacuum_seconds"] = round(vacuum(url), 1)
            loaded = sizes(url)
            print(f"{cfg.rows:,}-row table: measuring", flush=True)
            report["loaded"] = measure_three(server, url, cfg)
            print("plans ...", flush=True)
            report["plans"] = hot_plans(env, token)
            print("retention under single pushes ...", flush=True)
            report["retention"] = retention_under_pushes(server, env, cfg)
            retained = sizes(url)
            report["vacuum_after_seconds"] = round(vacuum(url), 1)
            report["sizes"] = {
                "loaded": loaded,
                "after_retention": retained,
                "after_vacuum": sizes(url),
            }
        report["gunicorn_log"] = str(log.relative_to(bench.ROOT))
        print()
        print(render(report))
        out = bench.RESULTS / f"{stamp}-rows.json"
        out.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"\nfigures: {out.relative_to(bench.ROOT)}  gunicorn log: {report['gunicorn_log']}")
    finally:
        if not cfg.keep:
            scratch = sql.Identifier(urlsplit(url).path.lstrip("/"))
            with psycopg.connect(bench.admin_url(url), autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(scratch))


if __name__ == "__main__":
    main()
