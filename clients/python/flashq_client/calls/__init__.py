"""Every API method once, as a plan (``_policy``) that ``Client`` and ``AsyncClient``
both carry out: the request it sends, whether it is safe to repeat, and how its answer
is read. The public methods of both clients are these, wrapped by ``as_method``."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

from .gathering import GatheringCalls
from .jobs import JobCalls, JobsPage
from .producing import ProducingCalls
from .queues import QueueCalls
from .schedules import ScheduleCalls
from .working import WorkingCalls

_PLAN = re.compile(r"Plan\[(?P<result>.+)\]")


class Calls(ProducingCalls, GatheringCalls, WorkingCalls, JobCalls, QueueCalls, ScheduleCalls):
    """The plans of every API method, for one client's settings."""


def as_method(wrapper: Callable[..., Any], plan: Callable[..., Any], owner: str) -> None:
    """Makes ``wrapper`` (a client's method that carries out ``plan``) show the plan's
    name, docstring and signature, its result in place of ``Plan[...]``: what
    ``help()``, ``inspect.signature`` and ``typing.get_type_hints`` (so the generated
    reference) see is the method as called."""
    annotations = dict(plan.__annotations__)
    match = _PLAN.fullmatch(str(annotations.get("return")))
    if match is None:
        raise TypeError(f"{plan.__qualname__} does not return a Plan[...]")
    annotations["return"] = match["result"]
    signature = inspect.signature(plan)
    wrapper.__name__ = plan.__name__
    wrapper.__qualname__ = f"{owner}.{plan.__name__}"
    wrapper.__doc__ = plan.__doc__
    wrapper.__annotations__ = annotations
    wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
        return_annotation=match["result"]
    )
    # Where get_type_hints finds the names the annotations use.
    wrapper.__wrapped__ = plan  # type: ignore[attr-defined]


__all__ = ["Calls", "JobsPage", "as_method"]
