"""CPU seconds used by the processes of a bench run, read from /proc (Linux)."""

from __future__ import annotations

import os
from pathlib import Path

HERTZ = os.sysconf("SC_CLK_TCK")


def _stat(pid: int | str) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_cpu(pid: int) -> float:
    """``pid``'s own CPU seconds."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / HERTZ


def server_cpu(master: int) -> float:
    """The CPU seconds of a gunicorn master's workers: the live ones, and those it
    already reaped (``max_requests`` replaces workers during a run)."""
    fields = _stat(master)
    total = int(fields[13]) + int(fields[14])
    for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split():
        try:
            fields = _stat(pid)
        except OSError:  # gone meanwhile: counted with the reaped ones next time
            continue
        total += int(fields[11]) + int(fields[12])
    return total / HERTZ


def postgres_cpu() -> float:
    """The CPU seconds of every PostgreSQL process on this machine."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"postgres"):
                continue
            fields = _stat(pid)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / HERTZ
