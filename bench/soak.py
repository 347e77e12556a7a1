"""flashQ soak (issue 10): many jobs pushed, pulled and acked through the production
server while retention runs, to show that the jobs table, its indexes and its dead
tuples stay bounded and that no gunicorn worker's memory grows.

    .venv/bin/python bench/soak.py [--jobs N | --quick]
    .venv/bin/python bench/soak.py --rows N [...]   # issue 24: see bench/tenmillion.py

It recreates a scratch database (``SOAK_DATABASE_URL``, default
``postgres://postgres@127.0.0.1:5432/flashq_soak``), migrates it, creates a token, sets a
one-day retention policy for completed jobs of the soak queue and serves the app with
gunicorn (bench/run.py's helpers). Producer threads push batches
(``POST /queues/soak/jobs/batch``) while the backlog stays under ``--max-backlog``;
consumer threads pull (``POST /queues/soak/pull``, long poll) and batch-ack
(``POST /jobs/ack``) until ``--jobs`` are acked. Every ``--every`` seconds a maintenance
step does what the django-q2 schedules would: ``retention_cleanup`` and ``audit_seal``,
each as its own ``manage.py`` process.

This machine's PostgreSQL may run with ``autovacuum = off`` (a CI setting). Then the
soak stands in for it (unless ``--no-vacuum-stand-in``): every ``--naptime`` seconds
(default ``--every``: autovacuum's cadence compressed like retention's) it runs
``VACUUM (ANALYZE)`` on each soak table whose dead tuples pass autovacuum's own trigger.

A soak cannot wait a day, so just before each ``retention_cleanup`` the step ages the
jobs completed since the last step by two days (one ``UPDATE`` of ``finished_at``).
That update leaves one extra dead row version (and, when not HOT, index entries) per
job, which the real schedule would not: the soak's bloat is, if anything, pessimistic.

It reports the table, index and audit sizes, dead tuples, autovacuum runs and every
gunicorn worker's RSS at the start, the middle (half the jobs acked) and the end, and
the throughput of each half; prints a table with PASS/BELOW verdicts and writes the
figures to ``bench/results/<timestamp>-soak.json`` (gunicorn's log goes beside it).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

if __package__ in (None, ""):  # run as a script: bench/run.py is importable as bench.run
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import run as bench

DEFAULT_DATABASE_URL = f"postgres://postgres@{bench.HOST}:5432/flashq_soak"
QUEUE = "soak"
RETENTION_DAYS = 1
QUICK_JOBS = 20_000
MAX_BACKLOG = 20_000
# Fewer retention steps than this before the middle: no steady state to compare against.
MIN_STEPS_BEFORE_MIDDLE = 2
STALL_SECONDS = 120
# A worker whose RSS grew less than this from the start to the middle had served next to
# nothing (its first requests alone load the views, DRF and a connection: some 20 MB).
COLD_KB = 5 * 1024
MB = 1024 * 1024

# Jobs completed since the last step, moved past the one-day policy (see the docstring).
AGE_COMPLETED = """
    UPDATE queues_job SET finished_at = finished_at - interval '2 days'
    WHERE state = 'completed' AND finished_at > now() - interval '1 day'
"""
JOB_TABLE = "queues_job"
AUDIT_TABLE = "compliance_auditevent"
TABLE_STATS = """
    SELECT pg_relation_size(relid), pg_indexes_size(relid), pg_total_relation_size(relid),
           n_live_tup, n_dead_tup, last_autovacuum, autovacuum_count, last_autoanalyze,
           autoanalyze_count, last_vacuum, vacuum_count
    FROM pg_stat_user_tables WHERE relname = %s
"""
AUTOVACUUM_SETTINGS = """
    SELECT name, setting FROM pg_settings WHERE name IN
        ('autovacuum', 'autovacuum_naptime', 'autovacuum_vacuum_threshold',
         'autovacuum_vacuum_scale_factor')
"""
# What autovacuum's launcher weighs, with the table's own settings (storage parameters
# such as the jobs table's from queues migration 0015) over the server's.
DEAD_AND_ESTIMATE = """
    SELECT s.n_dead_tup, greatest(c.reltuples, 0), coalesce(c.reloptions, '{}')
    FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid WHERE s.relname = %s
"""
INDEX_SIZES = """
    SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes
    WHERE relname = %s ORDER BY indexrelname
"""
JOB_STATES = "SELECT state, count(*) FROM queues_job GROUP BY state ORDER BY state"


@dataclass(frozen=True)
class SoakConfig:
    jobs: int
    batch: int
    producers: int
    consumers: int
    pull_count: int
    lease: int
    wait: float
    reconnect: int
    vacuum_stand_in: bool
    naptime: float | None
    max_backlog: int
    every: float
    workers: int
    time_limit: float
    size_factor: float
    rss_growth_pct: float
    rss_growth_mb: float


def parse_config(argv: list[str] | None = None) -> SoakConfig:
    parser = argparse.ArgumentParser(
        description="flashQ soak: bounded table, indexes, dead tuples and worker memory"
    )
    parser.add_argument("--jobs", type=int, default=500_000, help="jobs pushed, pulled, acked")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_JOBS:,} jobs")
    parser.add_argument("--batch", type=int, default=500, help="jobs per batch push")
    parser.add_argument("--producers", type=int, default=2, help="pushing threads")
    parser.add_argument("--consumers", type=int, default=3, help="pulling and acking threads")
    parser.add_argument("--pull-count", type=int, default=100, help="jobs per pull")
    parser.add_argument(
        "--max-backlog",
        type=int,
        help="producers pause above this many waiting (default: a tenth of the jobs, "
        "1,000 to 20,000)",
    )
    parser.add_argument(
        "--every",
        type=float,
        help="seconds from one retention/seal step's end to the next's start "
        "(default 10, with --quick 2)",
    )
    parser.add_argument(
        "--reconnect",
        type=int,
        default=20,
        help="each client reconnects every this many pushes or pulls (0: never)",
    )
    parser.add_argument(
        "--no-vacuum-stand-in",
        dest="vacuum_stand_in",
        action="store_false",
        help="with the server's autovacuum off, leave the dead tuples (default: the soak "
        "vacuums when autovacuum would)",
    )
    parser.add_argument(
        "--naptime",
        type=float,
        help="seconds between the stand-in's checks (default: --every, the retention "
        "step's cadence; the server's autovacuum_naptime is 60 s by default)",
    )
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument(
        "--time-limit", type=float, default=3 * 3600.0, help="seconds before the soak stops"
    )
    parser.add_argument(
        "--size-factor", type=float, default=1.5, help="end total size <= this x the middle's"
    )
    parser.add_argument(
        "--rss-growth-pct", type=float, default=20.0, help="worker RSS growth allowed (%%)"
    )
    parser.add_argument(
        "--rss-growth-mb", type=float, default=30.0, help="worker RSS growth allowed (MB)"
    )
    args = parser.parse_args(argv)
    jobs = QUICK_JOBS if args.quick else args.jobs
    if jobs < 2 or not 1 <= args.batch <= 1000 or not 1 <= args.pull_count <= 100:
        parser.error("need --jobs >= 2, --batch 1-1000 and --pull-count 1-100")
    return SoakConfig(
        jobs=jobs,
        batch=args.batch,
        producers=args.producers,
        consumers=args.consumers,
        pull_count=args.pull_count,
        lease=60,
        wait=1.0,
        reconnect=args.reconnect,
        vacuum_stand_in=args.vacuum_stand_in,
        naptime=args.naptime,
        max_backlog=args.max_backlog or min(MAX_BACKLOG, max(jobs // 10, 1000)),
        every=args.every or (2.0 if args.quick else 10.0),
        workers=args.workers,
        time_limit=args.time_limit,
        size_factor=args.size_factor,
        rss_growth_pct=args.rss_growth_pct,
        rss_growth_mb=args.rss_growth_mb,
    )


def set_retention(env: dict[str, str]) -> None:
    """A one-day policy for the soak queue's completed jobs, through the service (the
    exact name wins over the migration's default ``*`` policies)."""
    code = (
        "from compliance.audit import Actor; from compliance.models import RetentionPolicy; "
        "from compliance.retention import retention_policy_save; "
        f"retention_policy_save(policy=RetentionPolicy(queue_pattern={QUEUE!r}, "
        f"target='completed', max_age_days={RETENTION_DAYS}), actor=Actor.command('soak'))"
    )
    bench.manage(env, "shell", "-c", code)


# -- gunicorn's processes ---------------------------------------------------------------


def parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # after "pid (comm) state"


def children_of(pid: int) -> list[int]:
    pids = (int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    return sorted(child for child in pids if parent_of(child) == pid)


def gunicorn_master(port: int) -> int:
    """The gunicorn helper does not expose its process: find our child bound to ``port``."""
    bind = f"--bind={bench.HOST}:{port}".encode()
    for pid in children_of(os.getpid()):
        try:
            if bind in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                return pid
        except OSError:
            continue
    sys.exit(f"no gunicorn master bound to port {port} among this process's children")


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and RssAnon (the private part a leak grows) from /proc/<pid>/status, in kB."""
    fields: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon"):
                fields[name] = int(value.split()[0])
    except OSError:
        pass
    return fields


# -- snapshots --------------------------------------------------------------------------


@dataclass(frozen=True)
class TableStats:
    table_bytes: int
    indexes_bytes: int
    total_bytes: int
    live_tuples: int
    dead_tuples: int
    last_autovacuum: str | None
    autovacuum_count: int
    last_autoanalyze: str | None
    autoanalyze_count: int
    last_vacuum: str | None  # a VACUUM not by autovacuum (here: the soak's stand-in)
    vacuum_count: int

    @property
    def vacuums(self) -> int:
        return self.autovacuum_count + self.vacuum_count

    @property
    def last_any_vacuum(self) -> str | None:
        return max(filter(None, [self.last_autovacuum, self.last_vacuum]), default=None)


def table_stats(conn: psycopg.Connection[Any], table: str) -> TableStats:
    row = conn.execute(TABLE_STATS, [table]).fetchone()
    assert row is not None, table
    size, indexes, total, live, dead, autovacuumed, autovacuums, analyzed, analyzes = row[:9]
    vacuumed, vacuums = row[9:]
    return TableStats(
        table_bytes=size,
        indexes_bytes=indexes,
        total_bytes=total,
        live_tuples=live,
        dead_tuples=dead,
        last_autovacuum=autovacuumed.isoformat() if autovacuumed else None,
        autovacuum_count=autovacuums,
        last_autoanalyze=analyzed.isoformat() if analyzed else None,
        autoanalyze_count=analyzes,
        last_vacuum=vacuumed.isoformat() if vacuumed else None,
        vacuum_count=vacuums,
    )


@dataclass(frozen=True)
class Autovacuum:
    """The server's autovacuum settings, read once."""

    on: bool
    naptime: float
    threshold: int
    scale_factor: float

    @classmethod
    def read(cls, url: str) -> Autovacuum:
        with psycopg.connect(url, autocommit=True) as conn:
            settings: dict[str, str] = dict(conn.execute(AUTOVACUUM_SETTINGS).fetchall())
        return cls(
            on=settings["autovacuum"] == "on",
            naptime=float(settings["autovacuum_naptime"]),
            threshold=int(settings["autovacuum_vacuum_threshold"]),
            scale_factor=float(settings["autovacuum_vacuum_scale_factor"]),
        )


@dataclass(frozen=True)
class Snapshot:
    label: str
    seconds: float  # since the soak started
    acked: int
    pushed: int
    jobs: TableStats
    index_bytes: dict[str, int]
    job_states: dict[str, int]
    audit: TableStats
    master_kb: dict[str, int]
    workers_kb: dict[int, dict[str, int]]  # pid -> VmRSS, RssAnon
    steps: int  # retention/seal steps done so far


# -- the soak ---------------------------------------------------------------------------


@dataclass
class Maintenance:
    """What the retention/seal steps did."""

    runs: int = 0
    aged: int = 0
    deleted: int = 0
    sealed: int = 0
    seconds: list[float] = field(default_factory=list)
    unparsed: list[str] = field(default_factory=list)


DELETED_RE = re.compile(r"Deleted (\d+) job\(s\) in all\.")
SEALED_RE = re.compile(r"Sealed (\d+) audit event\(s\)\.")


def count_in(pattern: re.Pattern[str], out: str, unparsed: list[str]) -> int:
    match = pattern.search(out)
    if match is None:
        unparsed.append(out[-300:])
        return 0
    return int(match.group(1))


class Soak:
    """Shared counters of the producer, consumer, maintenance and monitor threads."""

    def __init__(
        self,
        cfg: SoakConfig,
        server: bench.Server,
        env: dict[str, str],
        url: str,
        autovacuum: Autovacuum,
    ):
        self.cfg = cfg
        self.autovacuum = autovacuum
        # autovacuum off on the server (a CI setting): the soak does its job, as its
        # launcher would (so the verdicts are about the app, not the server's config).
        self.stand_in = cfg.vacuum_stand_in and not autovacuum.on
        # The soak compresses a day of retention into --every seconds; by default it
        # compresses autovacuum's naptime the same way (else 500k jobs in two minutes
        # would see one vacuum, if any, before the middle).
        self.stand_in_every = cfg.naptime or cfg.every
        self.vacuums: list[dict[str, Any]] = []
        self.server = server
        self.env = env
        self.url = url
        self.master = gunicorn_master(server.port)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.reserved = 0  # jobs a producer has taken on (pushed or in flight)
        self.pushed = 0
        self.pulled = 0
        self.acked = 0
        self.lost = 0
        self.stalled = ""
        self.pushes = bench.Tally(cfg.producers, cfg.time_limit)
        self.acks = bench.Tally(cfg.consumers, cfg.time_limit)
        self.maintenance = Maintenance()
        self.started = 0.0
        self.middle_at = 0.0
        self.steps_before_middle = 0
        self.ended_at = 0.0
        self.snapshots: list[Snapshot] = []
        self.samples: list[dict[str, Any]] = []

    def count(self) -> tuple[int, int]:
        with self.lock:
            return self.acked, self.pushed

    def take(self, label: str) -> Snapshot:
        acked, pushed = self.count()
        # A new transaction per snapshot, so the statistics are not a cached copy.
        with psycopg.connect(self.url, autocommit=True) as conn:
            jobs = table_stats(conn, JOB_TABLE)
            indexes = {name: size for name, size in conn.execute(INDEX_SIZES, [JOB_TABLE])}
            states = {state: count for state, count in conn.execute(JOB_STATES)}
            audit = table_stats(conn, AUDIT_TABLE)
        shot = Snapshot(
            label=label,
            seconds=round(time.perf_counter() - self.started, 2) if self.started else 0.0,
            acked=acked,
            pushed=pushed,
            jobs=jobs,
            index_bytes=indexes,
            job_states=states,
            audit=audit,
            master_kb=memory_kb(self.master),
            workers_kb={pid: memory_kb(pid) for pid in children_of(self.master)},
            steps=self.maintenance.runs,
        )
        self.snapshots.append(shot)
        return shot

    def reconnects(self, client: bench.Client) -> Callable[[], None]:
        """Before each call: a new connection every ``--reconnect`` calls (Client.post opens
        it). A gthread worker keeps the keep-alive connections it accepted, so without this
        one worker can serve every client while the others idle, proving nothing."""
        calls = itertools.count(1)

        def before_call() -> None:
            if self.cfg.reconnect and not next(calls) % self.cfg.reconnect:
                client.close()

        return before_call

    # Each role runs in its own thread; the first to fail stops the others.

    def produce(self) -> None:
        path = f"/api/v1/queues/{QUEUE}/jobs/batch"
        with self.server.client() as client:
            before_call = self.reconnects(client)
            self.pushes.start()
            while not self.stop.is_set() and self.pushes.open():
                with self.lock:
                    size = min(self.cfg.batch, self.cfg.jobs - self.reserved)
                    if size <= 0:
                        return
                    first, self.reserved = self.reserved, self.reserved + size
                while self.pushed - self.pulled > self.cfg.max_backlog:
                    if self.stop.wait(0.05):
                        return
                body = {"jobs": [bench.job_body(first + i) for i in range(size)]}
                before_call()
                raw, seconds = bench.http_call(self.pushes, client, path, body, 201)
                with self.lock:
                    if raw is None:
                        self.reserved -= size  # another producer may retake these numbers
                    else:
                        self.pushed += size
                self.pushes.add(done=size if raw is not None else 0, seconds=seconds)
        self.stop.set()  # stopped early: too many failures or the time limit

    def consume(self) -> None:
        pull = f"/api/v1/queues/{QUEUE}/pull"
        params = {"count": self.cfg.pull_count, "lease": self.cfg.lease, "wait": self.cfg.wait}
        with self.server.client() as client:
            before_call = self.reconnects(client)
            self.acks.start()
            while not self.stop.is_set() and self.acks.open():
                start = time.perf_counter()
                before_call()
                raw, _ = bench.http_call(self.acks, client, pull, params, 200)
                if raw is None:
                    continue
                jobs = json.loads(raw)["jobs"]
                if not jobs:
                    continue
                with self.lock:
                    self.pulled += len(jobs)
                acks = {"jobs": [{"id": job["id"], "lease_id": job["lease_id"]} for job in jobs]}
                acked, _ = bench.http_call(self.acks, client, "/api/v1/jobs/ack", acks, 200)
                done = len(jobs) if acked is not None else 0
                with self.lock:
                    self.acked += done
                    self.lost += len(jobs) - done  # leased until it runs out: not pulled again
                self.acks.add(done=done, seconds=time.perf_counter() - start)
        self.stop.set()  # done, or stopped early: too many failures or the time limit

    def maintain(self) -> None:
        while not self.stop.wait(self.cfg.every):
            self.maintenance_step()

    def stand_in_autovacuum(self) -> None:
        """Every ``stand_in_every`` seconds, VACUUM (ANALYZE) each soak table whose dead
        tuples pass autovacuum's own trigger (threshold + scale factor x rows, the table's
        own settings first): autovacuum's decisions, without its cost-based throttling."""
        av = self.autovacuum
        while not self.stop.wait(self.stand_in_every):
            for table in (JOB_TABLE, AUDIT_TABLE):
                with psycopg.connect(self.url, autocommit=True) as conn:
                    row = conn.execute(DEAD_AND_ESTIMATE, [table]).fetchone()
                    assert row is not None, table
                    dead, rows, options = row
                    own = dict(option.split("=", 1) for option in options)
                    threshold = int(own.get("autovacuum_vacuum_threshold", av.threshold))
                    scale = float(own.get("autovacuum_vacuum_scale_factor", av.scale_factor))
                    if dead <= threshold + scale * rows:
                        continue
                    start = time.perf_counter()
                    conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))
                self.vacuums.append(
                    {
                        "table": table,
                        "at_seconds": round(start - self.started, 1),
                        "dead_before": dead,
                        "seconds": round(time.perf_counter() - start, 2),
                    }
                )

    def maintenance_step(self) -> None:
        """Age the newly completed jobs, then retention and sealing as the schedules would
        (each a manage.py process)."""
        done = self.maintenance
        start = time.perf_counter()
        with psycopg.connect(self.url, autocommit=True) as conn:
            done.aged += conn.execute(AGE_COMPLETED).rowcount
        out = bench.manage(self.env, "retention_cleanup")
        done.deleted += count_in(DELETED_RE, out, done.unparsed)
        done.sealed += count_in(SEALED_RE, bench.manage(self.env, "audit_seal"), done.unparsed)
        done.runs += 1
        done.seconds.append(round(time.perf_counter() - start, 2))
        self.sample()

    def sample(self) -> None:
        """A light reading after each step, for the JSON: is anything creeping up?"""
        acked, pushed = self.count()
        with psycopg.connect(self.url, autocommit=True) as conn:
            jobs = table_stats(conn, JOB_TABLE)
        workers = [memory_kb(pid).get("VmRSS", 0) for pid in children_of(self.master)]
        self.samples.append(
            {
                "seconds": round(time.perf_counter() - self.started, 1),
                "acked": acked,
                "backlog": pushed - self.pulled,
                "total_bytes": jobs.total_bytes,
                "live_tuples": jobs.live_tuples,
                "dead_tuples": jobs.dead_tuples,
                "vacuums": jobs.vacuums,
                "workers_rss_kb": workers,
            }
        )

    def monitor(self) -> None:
        half = self.cfg.jobs // 2
        last, moved = 0, time.monotonic()
        while not self.stop.wait(0.1):
            acked, _ = self.count()
            if acked != last:
                last, moved = acked, time.monotonic()
            elif time.monotonic() - moved > STALL_SECONDS:
                self.stalled = f"no job acked for {STALL_SECONDS} s at {acked:,}"
                self.stop.set()
            if not self.middle_at and acked >= half:
                self.middle_at = time.perf_counter()
                self.steps_before_middle = self.maintenance.runs
                print(f"middle: {acked:,} acked after {self.middle_at - self.started:.1f} s")
                self.take("middle")
            if acked + self.lost >= self.cfg.jobs:
                self.ended_at = time.perf_counter()
                self.stop.set()

    def run(self) -> None:
        roles: list[Callable[[], None]] = [
            *[self.produce] * self.cfg.producers,
            *[self.consume] * self.cfg.consumers,
            self.maintain,
            self.monitor,
            *([self.stand_in_autovacuum] if self.stand_in else []),
        ]
        pending = iter(roles)
        pick = threading.Lock()

        def work() -> None:
            with pick:
                role = next(pending)
            try:
                role()
            except BaseException:
                self.stop.set()
                raise

        self.started = time.perf_counter()
        bench.run_threads(len(roles), work)
        self.ended_at = self.ended_at or time.perf_counter()


# -- the report -------------------------------------------------------------------------


def rate(jobs: int, seconds: float) -> float:
    return jobs / seconds if seconds > 0 else 0.0


def mb(size: int) -> str:
    return f"{size / MB:.1f}"


@dataclass(frozen=True)
class Verdicts:
    steady: str  # why the middle is (not) a steady state to compare the end with
    size: str
    size_detail: str
    dead: str
    dead_detail: str
    rss: str
    rss_detail: list[str]
    complete: str


def steady_state(soak: Soak, middle: Snapshot) -> str:
    """Empty when the middle is past warm-up: retention ran and autovacuum has handed the
    deleted rows' space back (before that the table can only grow, whatever the app)."""
    missing = []
    if soak.steps_before_middle < MIN_STEPS_BEFORE_MIDDLE:
        missing.append(
            f"{soak.steps_before_middle} retention step(s) before the middle, "
            f"{MIN_STEPS_BEFORE_MIDDLE} needed (more --jobs or less --every)"
        )
    if middle.jobs.vacuums < 1:
        missing.append(
            "no vacuum of queues_job before the middle (more --jobs or a shorter naptime)"
        )
    return "; ".join(missing)


def dead_peaks(soak: Soak, middle: Snapshot, end: Snapshot) -> tuple[int, int]:
    """The highest n_dead_tup seen in each half (after each retention step, before each
    stand-in vacuum, and at the snapshots): dead tuples are a sawtooth, so peaks are
    compared, not two arbitrary points."""
    readings = [(s["seconds"], s["dead_tuples"]) for s in soak.samples] + [
        (v["at_seconds"], v["dead_before"]) for v in soak.vacuums if v["table"] == JOB_TABLE
    ]
    first = [dead for at, dead in readings if at < middle.seconds]
    second = [dead for at, dead in readings if at >= middle.seconds]
    return max([*first, middle.jobs.dead_tuples]), max([*second, end.jobs.dead_tuples])


def judge_rss(
    cfg: SoakConfig, start: Snapshot, middle: Snapshot, end: Snapshot
) -> tuple[bool, list[str]]:
    """Each worker's VmRSS from the middle to the end. A worker still cold at the middle
    (within COLD_KB of its start: it had served next to nothing) would show its warm-up,
    not a leak: it is listed, not judged. No worker warm at the middle: nothing proven."""
    ok, judged, details = True, 0, []
    for pid, before in sorted(middle.workers_kb.items()):
        after = end.workers_kb.get(pid, {})
        if "VmRSS" not in after or "VmRSS" not in before:
            ok = False
            details.append(f"worker {pid}: gone by the end (restarted?)")
            continue
        grew = after["VmRSS"] - before["VmRSS"]
        pct = 100 * grew / before["VmRSS"]
        line = (
            f"worker {pid}: {before['VmRSS'] / 1024:.1f} -> {after['VmRSS'] / 1024:.1f} MB "
            f"({grew / 1024:+.1f} MB, {pct:+.1f}%)"
        )
        at_start = start.workers_kb.get(pid, {}).get("VmRSS", 0)
        if before["VmRSS"] - at_start < COLD_KB:
            details.append(f"{line} not judged: cold at the middle")
            continue
        fine = pct <= cfg.rss_growth_pct and grew / 1024 <= cfg.rss_growth_mb
        ok, judged = ok and fine, judged + 1
        details.append(f"{line} {'ok' if fine else 'GREW'}")
    details += [
        f"worker {pid}: new since the middle"
        for pid in sorted(end.workers_kb.keys() - middle.workers_kb.keys())
    ]
    if not judged:
        details.append("no worker warm at the middle: nothing to judge")
    return ok and judged > 0, details


def judge(
    cfg: SoakConfig, soak: Soak, start: Snapshot, middle: Snapshot, end: Snapshot
) -> Verdicts:
    unsteady = steady_state(soak, middle)
    bound = cfg.size_factor * middle.jobs.total_bytes
    size_ok = end.jobs.total_bytes <= bound and not unsteady
    size_detail = (
        f"end total {mb(end.jobs.total_bytes)} MB <= {cfg.size_factor:g} x middle "
        f"{mb(middle.jobs.total_bytes)} MB = {mb(int(bound))} MB"
    )
    first_dead, second_dead = dead_peaks(soak, middle, end)
    dead_bound = cfg.size_factor * first_dead
    dead_ok = second_dead <= dead_bound and not unsteady
    dead_detail = (
        f"second-half peak {second_dead:,} <= {cfg.size_factor:g} x first-half peak "
        f"{first_dead:,} = {dead_bound:,.0f}"
    )
    rss_ok, details = judge_rss(cfg, start, middle, end)
    errors = soak.pushes.errors + soak.acks.errors
    complete_ok = end.acked >= cfg.jobs and errors == 0
    return Verdicts(
        steady=unsteady,
        size="PASS" if size_ok else "BELOW",
        size_detail=size_detail,
        dead="PASS" if dead_ok else "BELOW",
        dead_detail=dead_detail,
        rss="PASS" if rss_ok else "BELOW",
        rss_detail=details,
        complete="PASS" if complete_ok else "BELOW",
    )


def render(cfg: SoakConfig, soak: Soak, shots: list[Snapshot], verdicts: Verdicts) -> str:
    width = 14
    label = max(26, *(len(name) + 6 for name in shots[-1].index_bytes))
    head = f"{'':<{label}}" + "".join(f"{shot.label:>{width}}" for shot in shots)
    lines = [head, "-" * len(head)]

    def row(name: str, value: Callable[[Snapshot], str]) -> None:
        lines.append(f"{name:<{label}}" + "".join(f"{value(shot):>{width}}" for shot in shots))

    row("seconds", lambda s: f"{s.seconds:.1f}")
    row("jobs acked", lambda s: f"{s.acked:,}")
    row("retention steps done", lambda s: str(s.steps))
    row("queues_job table MB", lambda s: mb(s.jobs.table_bytes))
    row("queues_job indexes MB", lambda s: mb(s.jobs.indexes_bytes))
    row("queues_job total MB", lambda s: mb(s.jobs.total_bytes))
    for name in shots[-1].index_bytes:
        row(f"  {name} MB", functools.partial(index_mb, name=name))
    row("n_live_tup", lambda s: f"{s.jobs.live_tuples:,}")
    row("n_dead_tup", lambda s: f"{s.jobs.dead_tuples:,}")
    row("autovacuum_count", lambda s: str(s.jobs.autovacuum_count))
    row("vacuum_count (stand-in)", lambda s: str(s.jobs.vacuum_count))
    row("last (auto)vacuum", lambda s: (s.jobs.last_any_vacuum or "-")[11:19] or "-")
    row("autoanalyze_count", lambda s: str(s.jobs.autoanalyze_count))
    row("jobs waiting/active", lambda s: waiting_active(s.job_states))
    row("jobs completed", lambda s: f"{s.job_states.get('completed', 0):,}")
    row("auditevent total MB", lambda s: mb(s.audit.total_bytes))
    row("auditevent rows", lambda s: f"{s.audit.live_tuples:,}")
    row("gunicorn master RSS MB", lambda s: f"{s.master_kb.get('VmRSS', 0) / 1024:.1f}")
    for n, pid in enumerate(sorted(shots[-1].workers_kb)):
        row(f"worker {n + 1} ({pid}) RSS MB", functools.partial(worker_mb, pid=pid))

    first = soak.middle_at - soak.started
    second = soak.ended_at - soak.middle_at
    middle, end = shots[1].acked, shots[-1].acked
    done = soak.maintenance
    steps = done.seconds
    mean_step = sum(steps) / len(steps) if steps else 0.0
    lines += [
        "",
        f"throughput: first half {rate(middle, first):.0f} jobs/s ({middle:,} in {first:.1f} s),"
        f" second half {rate(end - middle, second):.0f} jobs/s "
        f"({end - middle:,} in {second:.1f} s)",
        f"pushes: {soak.pushed:,} jobs, {soak.pushes.errors} failed; pull + ack: {soak.acked:,}"
        f" jobs, {soak.acks.errors} failed; {soak.server.connections()} connections opened",
        *[f"    {sample}" for sample in soak.pushes.error_samples + soak.acks.error_samples],
        f"maintenance: {done.runs} steps every {cfg.every:g} s (age + retention_cleanup + "
        f"audit_seal), {done.aged:,} jobs aged, {done.deleted:,} deleted, "
        f"{done.sealed:,} audit events sealed; step "
        f"{mean_step:.1f} s mean, {max(steps, default=0):.1f} s max",
        *[f"    unparsed output: {out!r}" for out in done.unparsed[:3]],
        vacuum_note(cfg, soak.autovacuum)
        + (f": {len(soak.vacuums)} run(s)" if soak.stand_in else ""),
        *[f"    {vacuum}" for vacuum in soak.vacuums],
        "",
        *([f"NOT A STEADY STATE at the middle: {verdicts.steady}"] if verdicts.steady else []),
        f"bounded table + indexes: {verdicts.size}  ({verdicts.size_detail})",
        f"bounded dead tuples: {verdicts.dead}  ({verdicts.dead_detail})",
        f"worker memory (middle -> end, <= {cfg.rss_growth_pct:g}% and "
        f"<= {cfg.rss_growth_mb:g} MB): {verdicts.rss}",
        *[f"    {line}" for line in verdicts.rss_detail],
        f"all {cfg.jobs:,} jobs acked, no failed call: {verdicts.complete}"
        + (f"  ({soak.lost:,} pulled jobs not acked)" if soak.lost else "")
        + (f"  (stopped: {soak.stalled})" if soak.stalled else ""),
    ]
    return "\n".join(lines)


def waiting_active(states: dict[str, int]) -> str:
    return f"{states.get('waiting', 0):,}/{states.get('active', 0):,}"


def index_mb(shot: Snapshot, name: str) -> str:
    return mb(shot.index_bytes.get(name, 0))


def worker_mb(shot: Snapshot, pid: int) -> str:
    kb = shot.workers_kb.get(pid, {}).get("VmRSS")
    return "-" if kb is None else f"{kb / 1024:.1f}"


def vacuum_note(cfg: SoakConfig, av: Autovacuum) -> str:
    if av.on:
        return f"autovacuum: on (the server's, naptime {av.naptime:g} s)"
    if cfg.vacuum_stand_in:
        return (
            f"autovacuum is OFF on this server: the soak stands in (VACUUM (ANALYZE) when "
            f"dead > threshold + scale factor x rows, the table's own settings or the "
            f"server's {av.threshold} + {av.scale_factor:g}, checked every "
            f"{cfg.naptime or cfg.every:g} s; the server's naptime is {av.naptime:g} s)"
        )
    return "autovacuum is OFF on this server and --no-vacuum-stand-in: nothing reclaims"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if any(arg == "--rows" or arg.startswith("--rows=") for arg in args):
        from bench import tenmillion  # issue 24's mode: rates and retention at N rows

        tenmillion.main(args)
        return
    cfg = parse_config(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    bench.RESULTS.mkdir(parents=True, exist_ok=True)
    url = bench.database_url("SOAK_DATABASE_URL", DEFAULT_DATABASE_URL)
    bench.ensure_postgres(url)
    bench.recreate_database(url)
    env = bench.app_environment(url)
    print("Migrating the scratch database ...", flush=True)
    bench.manage(env, "migrate", "--noinput")
    token = bench.create_token(env)
    set_retention(env)
    autovacuum = Autovacuum.read(url)
    print(vacuum_note(cfg, autovacuum), flush=True)
    # bench.gunicorn takes run.py's whole Config but reads only the worker count.
    server_cfg = dataclasses.replace(bench.parse_config([]), workers=cfg.workers)
    log = bench.RESULTS / f"{stamp}-soak-gunicorn.log"
    with bench.gunicorn(env, server_cfg, token, log) as server:
        soak = Soak(cfg, server, env, url, autovacuum)
        soak.take("start")
        print(
            f"soak: {cfg.jobs:,} jobs, batches of {cfg.batch}, {cfg.producers} producers, "
            f"{cfg.consumers} consumers, backlog <= {cfg.max_backlog:,}, retention every "
            f"{cfg.every:g} s",
            flush=True,
        )
        soak.run()
        end = soak.take("end")
    if not soak.middle_at:
        sys.exit(f"the soak stopped before the middle: {soak.count()[0]:,} acked")
    middle = soak.snapshots[1]
    verdicts = judge(cfg, soak, soak.snapshots[0], middle, end)
    print()
    print(render(cfg, soak, soak.snapshots, verdicts))
    first = soak.middle_at - soak.started
    second = soak.ended_at - soak.middle_at
    report = {
        "time": stamp,
        "commit": bench.git_commit(),
        "config": asdict(cfg),
        "aging": "finished_at of jobs completed since the last step moved back 2 days "
        "right before each retention_cleanup (one UPDATE: an extra dead row version each)",
        "snapshots": [asdict(shot) for shot in soak.snapshots],
        "throughput": {
            "first_half_jobs_per_s": round(rate(middle.acked, first), 1),
            "second_half_jobs_per_s": round(rate(end.acked - middle.acked, second), 1),
            "first_half_seconds": round(first, 2),
            "second_half_seconds": round(second, 2),
        },
        "pushes": {"jobs": soak.pushed, "errors": soak.pushes.errors},
        "acks": {"jobs": soak.acked, "errors": soak.acks.errors, "lost": soak.lost},
        "stalled": soak.stalled,
        "error_samples": soak.pushes.error_samples + soak.acks.error_samples,
        "maintenance": asdict(soak.maintenance),
        "autovacuum": asdict(soak.autovacuum),
        "vacuum_note": vacuum_note(cfg, soak.autovacuum),
        "stand_in_vacuums": soak.vacuums,
        "samples": soak.samples,
        "verdicts": asdict(verdicts),
        "http_connections": server.connections(),
        "gunicorn_log": str(log.relative_to(bench.ROOT)),
    }
    out = bench.RESULTS / f"{stamp}-soak.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nfigures: {out.relative_to(bench.ROOT)}  gunicorn log: {log.relative_to(bench.ROOT)}")


if __name__ == "__main__":
    main()
