"""REFERENCE.md is written from the docstrings by tools/reference.py: the suite fails
when it is stale (so ``python3 dev.py test`` catches drift, as CI's lint does), and the
docstring convention is checked by the same tool."""

from __future__ import annotations

import importlib.util
import inspect
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

TOOL = Path(__file__).resolve().parents[1] / "tools" / "reference.py"


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("flashq_reference_tool", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our interpreter, our tool
        [sys.executable, str(TOOL), *args], capture_output=True, text=True, check=False
    )


def test_the_reference_matches_the_docstrings() -> None:
    done = _run("--check")
    assert done.returncode == 0, done.stdout + done.stderr


def test_check_fails_with_a_diff_when_the_reference_is_stale(tmp_path: Path) -> None:
    stale = tmp_path / "REFERENCE.md"
    assert _run("--output", str(stale)).returncode == 0
    fresh = stale.read_text()
    stale.write_text(fresh.replace("#### Client.push\n", "#### Client.push_old\n", 1))
    done = _run("--check", "--output", str(stale))
    assert done.returncode == 1
    assert "-#### Client.push_old" in done.stdout and "+#### Client.push" in done.stdout
    assert "is stale" in done.stdout


def test_the_reference_is_the_same_every_time(tmp_path: Path) -> None:
    first, second = tmp_path / "one.md", tmp_path / "two.md"
    assert _run("--output", str(first)).returncode == 0
    assert _run("--output", str(second)).returncode == 0
    assert first.read_bytes() == second.read_bytes()
    assert " at 0x" not in first.read_text()  # no object addresses from a default's repr


def test_it_shows_signatures_and_sections_as_written() -> None:
    tool = _tool()

    def push(self: Any, queue: str, *, delay_ms: int | None = None) -> dict[str, Any]:
        """Push one job.

        Args:
            queue: the queue.
            delay_ms: how long to wait first.

        Returns:
            The job.

        Raises:
            Forbidden: the token may not push there.

        Retried:
            yes, safe: the idempotency key finds the first push.
        """
        raise NotImplementedError

    class Client:
        pass

    setattr(Client, "push", push)  # noqa: B010 - a method added after the class
    lines = "\n".join(tool._entry("Client.push", "####", push, Client))
    assert "push(queue: str, *, delay_ms: int | None = None) -> dict[str, Any]" in lines
    assert "- `queue`: the queue." in lines and "**Returns**: The job." in lines
    assert "- `Forbidden`: the token may not push there." in lines
    assert "**Retried**: yes, safe: the idempotency key finds the first push." in lines
    assert tool.problems_of("Client.push", push.__doc__, push, client=True) == []


def test_the_lint_names_what_a_client_method_lacks() -> None:
    tool = _tool()

    def ack(self: Any, job_id: str, lease_id: str) -> dict[str, Any]:
        """Complete a job.

        Args:
            job_id: the job.
            result: gone from the signature.

        Raises:
            Exploded: no such class.
        """
        raise NotImplementedError

    assert tool.problems_of("Client.ack", ack.__doc__, ack, client=True) == [
        "Client.ack: Args lacks lease_id",
        "Client.ack: Args names what the signature has not: result",
        "Client.ack: no Returns section",
        "Client.ack: Raises names an unknown class 'Exploded'",
        "Client.ack: no Retried section",
    ]
    assert tool.problems_of("Worker.run", None, None, client=False) == [
        "Worker.run: no summary line"
    ]


def test_an_async_method_shares_its_twins_docstring() -> None:
    tool = _tool()

    class AsyncClient:
        async def pull(self) -> None:
            pass

    doc, source = tool.shared_doc(AsyncClient, "pull", AsyncClient.pull)
    import flashq_client

    assert source == "Client.pull" and doc == inspect.getdoc(flashq_client.Client.pull)
    assert doc and doc.startswith("Lease up to")


def test_every_public_docstring_follows_the_convention() -> None:
    done = _run("--lint")
    assert done.returncode == 0, done.stdout
