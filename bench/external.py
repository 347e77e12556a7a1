"""flashQ from outside: wrk against gunicorn as deployed (issue 24).

    .venv/bin/python bench/external.py [--seconds 10] [--rounds 3] [--connections 16]

It recreates a scratch database (``BENCH_DATABASE_URL``, default
``postgres://postgres@127.0.0.1:5432/flashq_wrk``), migrates it, creates a token and
serves the app with the deploy's own gunicorn config and its default worker count
(``deploy/gunicorn.conf.py``: 2 workers per core). Then, in ``--rounds`` interleaved
rounds, wrk (Debian's ``wrk`` package) drives ``GET /healthz`` and single pushes
(``bench/wrk/push.lua``) closed-loop from ``--connections`` connections for
``--seconds`` each. Interleaving puts a shared machine's noise on both sides alike.

It prints each round's rates, the push / healthz ratio and the push p99, the median
round's verdicts against issue 24's targets (ratio >= 0.35, p99 <= 100 ms), and checks
that every push wrk counted as answered 201 landed in the database. wrk runs on the
same machine as the server, so both sides pay for its CPU; see the README's "Measure it
yourself" for running it against your own deployment.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

if __package__ in (None, ""):  # run as a script: bench/run.py is importable as bench.run
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import run as bench

DEFAULT_DATABASE_URL = f"postgres://postgres@{bench.HOST}:5432/flashq_wrk"
QUEUE = "wrk"
SCRIPT = bench.ROOT / "bench" / "wrk" / "push.lua"
FLOOR_TARGET = bench.FLOOR_TARGET
P99_TARGET_MS = 100.0
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass
class WrkRun:
    rate: float  # requests per second
    requests: int
    non_2xx: int
    errors: int  # socket errors: connect, read, write, timeout
    p50_ms: float
    p99_ms: float


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> WrkRun:
    """The figures of one ``wrk --latency`` run."""

    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, output)
        if match is None:
            raise ValueError(f"wrk printed no {pattern!r}:\n{output}")
        return match

    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return WrkRun(
        rate=float(find(r"Requests/sec:\s+([\d.]+)").group(1)),
        requests=int(find(r"(\d+) requests in").group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        errors=sum(int(n) for n in errors.groups()) if errors else 0,
        p50_ms=_ms(find(r"\n\s+50%\s+(\S+)").group(1)),
        p99_ms=_ms(find(r"\n\s+99%\s+(\S+)").group(1)),
    )


def wrk(url: str, connections: int, seconds: float, token: str, script: bool) -> WrkRun:
    command = [
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--latency",
        *(["-s", str(SCRIPT)] if script else []),
        url,
    ]
    env = {**os.environ, "FLASHQ_TOKEN": token}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"wrk failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return parse_wrk(done.stdout)


def probe(server: bench.Server, push_url: str) -> None:
    """One push with the script's body before wrk runs: wrk counts a refusal as a
    response, so a wrong token or body would otherwise be measured as a fast push."""
    body = re.search(r"wrk.body = '(.*)'", SCRIPT.read_text())
    assert body is not None, "bench/wrk/push.lua sets no wrk.body"
    with server.client() as client:
        status, answer = client.post(urlsplit(push_url).path, json.loads(body.group(1)))
    if status != 201:
        sys.exit(f"a probe push answered {status}: {answer[:500]!r}")


def jobs_in(url: str, queue: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM queues_job j JOIN queues_queue q ON q.id = j.queue_id "
            "WHERE q.name = %s",
            [queue],
        ).fetchone()
    return int(row[0]) if row else 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="each wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="healthz, push pairs")
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    os.environ.setdefault("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    url = bench.database_url()  # refuses a database not on this machine
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    bench.RESULTS.mkdir(parents=True, exist_ok=True)
    bench.ensure_postgres(url)
    bench.recreate_database(url)
    env = bench.app_environment(url)
    print("Migrating the scratch database ...", flush=True)
    bench.manage(env, "migrate", "--noinput")
    token = bench.create_token(env)
    # The deploy's default worker count (deploy/gunicorn.conf.py), not bench/run.py's.
    cfg = bench.parse_config([f"--workers={multiprocessing.cpu_count() * 2}"])
    log = bench.RESULTS / f"{stamp}-wrk-gunicorn.log"
    rounds: list[tuple[WrkRun, WrkRun]] = []
    with bench.gunicorn(env, cfg, token, log) as server:
        base = f"http://{bench.HOST}:{server.port}"
        push_url = f"{base}/api/v1/queues/{QUEUE}/jobs"
        probe(server, push_url)
        wrk(push_url, args.connections, 2, token, script=True)  # warm-up, not counted
        warm = jobs_in(url, QUEUE)
        for n in range(args.rounds):
            pair: list[WrkRun] = []
            # Alternate which side goes first, so drift hits both alike.
            for script in (False, True) if n % 2 == 0 else (True, False):
                pair.append(wrk(push_url if script else f"{base}/healthz",
                                args.connections, args.seconds, token, script))  # fmt: skip
            healthz, push = pair if n % 2 == 0 else pair[::-1]
            rounds.append((healthz, push))
            print(
                f"round {n + 1}: healthz {healthz.rate:,.0f} req/s, push {push.rate:,.0f} req/s "
                f"(p50 {push.p50_ms:.1f} ms, p99 {push.p99_ms:.1f} ms), "
                f"ratio {push.rate / healthz.rate:.3f}",
                flush=True,
            )
    landed = jobs_in(url, QUEUE) - warm
    answered = sum(push.requests - push.non_2xx for _, push in rounds)
    ratios = [push.rate / healthz.rate for healthz, push in rounds]
    median = statistics.median(ratios)
    healthz, push = rounds[ratios.index(median)] if median in ratios else rounds[0]
    failed = sum(p.non_2xx + p.errors + h.non_2xx + h.errors for h, p in rounds)
    verdicts = [
        (f"push / healthz (median of {len(rounds)})", f">= {FLOOR_TARGET}", median,
         median >= FLOOR_TARGET),
        (f"push p99 at {args.connections} connections", f"<= {P99_TARGET_MS:g} ms",
         push.p99_ms, push.p99_ms <= P99_TARGET_MS),
        ("answered pushes that landed", f"{answered}", landed, landed >= answered),
        ("failed or non-2xx responses", "0", failed, failed == 0),
    ]  # fmt: skip
    print()
    for name, target, value, ok in verdicts:
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"{name:<44} {target:>12} {shown:>10}  {'PASS' if ok else 'BELOW'}")
    report = {
        "time": stamp,
        "commit": bench.git_commit(),
        "connections": args.connections,
        "seconds": args.seconds,
        "workers": cfg.workers,
        "rounds": [{"healthz": asdict(h), "push": asdict(p)} for h, p in rounds],
        "median_ratio": round(median, 4),
        "landed": landed,
        "answered": answered,
        "gunicorn_log": str(log.relative_to(bench.ROOT)),
    }
    out = bench.RESULTS / f"{stamp}-wrk.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nfigures: {out.relative_to(bench.ROOT)}")


if __name__ == "__main__":
    main()
