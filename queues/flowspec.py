"""A flow's body checked as plain code: a root job and its tree of children, each a push
spec (queues.jobspec) in a queue of its own. Errors carry the node's path in the body
(``/children/2/children/0/job/data``), so a client sees which job of a large tree is
wrong; the whole body is checked before anything is written.

The tree's shape is checked first, without parsing any job (a 10 MiB body could hold
hundreds of thousands of small nodes): at most MAX_FLOW_DEPTH levels, the root's
included, at most MAX_FLOW_JOBS jobs in all, and at least one child."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from kernel.limits import MAX_FLOW_DEPTH, MAX_FLOW_JOBS, QUEUE_NAME_RE, QUEUE_NAME_RULE
from kernel.problems import FieldError, InvalidInput, pointer_segment
from security.cards import CardFinding, card_problem, find_cards_in_text

from .jobspec import JobSpec, Problems, parse_job_spec
from .models import OnChildFailure

ROOT_FIELDS = frozenset({"job", "children", "on_child_failure"})
CHILD_FIELDS = ROOT_FIELDS | {"queue"}
_ON_CHILD_FAILURE = frozenset(OnChildFailure.values)


@dataclass(frozen=True)
class FlowNode:
    """One job of a flow: its queue, its push spec, what it does when a child fails for
    good (kept on parents) and its children, in the order given."""

    queue: str
    spec: JobSpec
    on_child_failure: str = OnChildFailure.FAIL
    children: tuple[FlowNode, ...] = ()
    path: str = ""  # the node in the body: "" for the root, "/children/0/children/2"

    def walk(self) -> Iterator[FlowNode]:
        """Every node, the root first, each parent before its children (pre-order)."""
        yield self
        for child in self.children:
            yield from child.walk()

    def queues(self) -> list[str]:
        """The distinct queues of the tree, in the order they first appear."""
        return list(dict.fromkeys(node.queue for node in self.walk()))


@dataclass
class _Parse:
    problems: Problems
    max_bytes: int
    default: str
    cards: list[CardFinding] = field(default_factory=list)


def parse_flow(body: Any, *, queue_name: str, max_bytes: int) -> FlowNode:
    """The flow whose root goes to ``queue_name`` (the route's), or InvalidInput (400),
    PayloadTooLarge (413) or CardNumberDetected (422, a card number in a queue name)
    naming every problem found."""
    _refuse_shape(body)
    problems = Problems()
    default = _on_child_failure(body, "", problems, OnChildFailure.FAIL)
    parse = _Parse(problems=problems, max_bytes=max_bytes, default=default)
    root = _node(body, queue_name, "", parse)
    problems.raise_any()
    refused = card_problem(parse.cards)
    if refused is not None:
        raise refused
    assert root is not None
    return root


def _invalid(errors: list[FieldError]) -> InvalidInput:
    return InvalidInput("The request has invalid fields.", errors=errors)


def _refuse_shape(body: Any) -> None:
    if not isinstance(body, dict):
        raise InvalidInput(
            "The body must be a JSON object.", errors=[FieldError("/", "must be an object")]
        )
    children = body.get("children")
    if not isinstance(children, list) or not children:
        raise _invalid([FieldError("/children", "must be a list of at least one child")])
    errors: list[FieldError] = []
    count = 1
    stack: list[tuple[Any, str, int]] = [(body, "", 1)]
    while stack:
        node, path, level = stack.pop()
        kids = node.get("children") if isinstance(node, dict) else None
        if kids is None or kids == []:
            continue
        if not isinstance(kids, list):
            errors.append(FieldError(f"{path}/children", "must be a list of children"))
            continue
        if level == MAX_FLOW_DEPTH:
            errors.append(
                FieldError(
                    f"{path}/children",
                    f"is one level too many: a flow has at most {MAX_FLOW_DEPTH} levels, "
                    "its root's included",
                )
            )
            continue
        count += len(kids)
        if count > MAX_FLOW_JOBS:
            raise _invalid(
                [
                    FieldError(
                        "/children",
                        f"a flow holds at most {MAX_FLOW_JOBS} jobs, its root included",
                    )
                ]
            )
        stack.extend(
            (kid, f"{path}/children/{index}", level + 1)
            for index, kid in reversed(list(enumerate(kids)))
        )
    if errors:
        raise _invalid(errors)


def _on_child_failure(raw: Any, path: str, problems: Problems, default: str) -> str:
    value = raw.get("on_child_failure") if isinstance(raw, dict) else None
    if value is None:
        return default
    if not isinstance(value, str) or value not in _ON_CHILD_FAILURE:
        choices = ", ".join(repr(choice) for choice in sorted(_ON_CHILD_FAILURE))
        problems.invalid.append(FieldError(f"{path}/on_child_failure", f"must be one of {choices}"))
        return default
    return str(value)


def _queue(raw: dict[str, Any], path: str, parse: _Parse) -> str | None:
    name = raw.get("queue")
    if not isinstance(name, str) or not QUEUE_NAME_RE.fullmatch(name):
        parse.problems.invalid.append(FieldError(f"{path}/queue", f"must be {QUEUE_NAME_RULE}"))
        return None
    # A push creates its queue, whose name everyone who may see it reads.
    parse.cards += find_cards_in_text(name, f"{path}/queue")
    return name


def _job(raw: dict[str, Any], path: str, root: bool, parse: _Parse) -> JobSpec | None:
    if "job" not in raw:
        parse.problems.invalid.append(FieldError(f"{path}/job", "is required"))
        return None
    job = raw["job"]
    spec = parse_job_spec(
        job, path=f"{path}/job", problems=parse.problems, max_bytes=parse.max_bytes
    )
    if not isinstance(job, dict):
        return None
    if not root and job.get("key") is not None:
        parse.problems.invalid.append(
            FieldError(f"{path}/job/key", "only the flow's root job may have a key")
        )
        return None
    if job.get("depends_on") is not None:
        parse.problems.invalid.append(
            FieldError(
                f"{path}/job/depends_on",
                "is not allowed in a flow: a parent waits for its children",
            )
        )
        return None
    return spec


def _node(raw: Any, queue: str | None, path: str, parse: _Parse) -> FlowNode | None:
    root = path == ""
    if not isinstance(raw, dict):
        parse.problems.invalid.append(FieldError(path, "must be an object with queue and job"))
        return None
    for name in sorted(set(raw) - (ROOT_FIELDS if root else CHILD_FIELDS)):
        parse.problems.invalid.append(
            FieldError(f"{path}/{pointer_segment(name)}", "is not a known field")
        )
    if not root:
        queue = _queue(raw, path, parse)
    spec = _job(raw, path, root, parse)
    on_child_failure = _on_child_failure(raw, path, parse.problems, parse.default)
    children = [
        _node(child, None, f"{path}/children/{index}", parse)
        for index, child in enumerate(raw.get("children") or ())
    ]
    if queue is None or spec is None:
        return None
    kept = tuple(child for child in children if child is not None)
    if len(kept) < len(children):
        return None
    return FlowNode(
        queue=queue, spec=spec, on_child_failure=on_child_failure, children=kept, path=path
    )
