#!/usr/bin/env python3
"""flashq_client's method reference, written from its docstrings so it cannot drift.

    python clients/python/tools/reference.py           (re)write clients/python/REFERENCE.md
    python clients/python/tools/reference.py --check   exit 1, with a diff, when it is stale
    python clients/python/tools/reference.py --lint    exit 1 naming every docstring that
                                                       breaks the convention below

Every public class and function the package exports (``flashq_client.__all__``) and
``flashq_client.django_tasks.__all__`` is listed: each public method with its signature
(from ``inspect``, annotations as written in the source) and its Google-style docstring's
summary, text and sections ``Args``, ``Returns``, ``Raises``, ``Retried`` (parsed with
docstring_parser). The output depends on nothing but the source: no addresses, no dates.

The convention ``--lint`` holds docstrings to: a summary line; every parameter of the
signature in ``Args`` and nothing else there; ``Raises`` naming classes that exist (of
flashq_client.errors, or builtins); and for the clients' methods (``Client``,
``AsyncClient``) ``Raises`` and ``Retried`` sections, and ``Returns`` unless they return
None. A method of ``AsyncX`` without a docstring of its own shares ``X``'s.
"""

from __future__ import annotations

import argparse
import builtins
import difflib
import inspect
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, is_typeddict

from docstring_parser import Docstring
from docstring_parser.google import DEFAULT_SECTIONS, GoogleParser, Section, SectionType

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
REFERENCE = PACKAGE_ROOT / "REFERENCE.md"
#: Classes whose methods are calls to the server: they say what they raise and whether
#: they are retried.
CLIENTS = frozenset({"Client", "AsyncClient"})
#: The clients' methods that make no request: no Raises or Retried to state (``flush``
#: only cuts producer mode's waiting short: its pushes' own callers send and raise).
LOCAL_METHODS = frozenset({"close", "aclose", "interrupt", "flush"})
#: The order of the first section; any other class comes after them, by name.
#: Signatures longer than this are written one parameter a line.
WIDTH = 88
LEADING = ("Client", "AsyncClient", "Worker", "AsyncWorker", "WorkerJob", "FieldKeys")
# The package of this checkout, whatever else is installed.
sys.path.insert(0, str(PACKAGE_ROOT))
PARSER = GoogleParser(
    sections=[*DEFAULT_SECTIONS, Section("Retried", "retried", SectionType.SINGULAR)]
)


class _Written(str):
    """An annotation's source text, shown as written (inspect would quote a string)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


def _as_written(annotation: Any) -> Any:
    if annotation is inspect.Parameter.empty:
        return annotation
    if isinstance(annotation, str):
        return _Written(annotation)
    return _Written(inspect.formatannotation(annotation))


def signature(function: Callable[..., Any], *, drop_first: bool, returns: bool = True) -> str:
    """``(name: annotation = default, ...) -> annotation``, as the source says it; one
    parameter a line when that is too long for one."""
    found = inspect.signature(function, eval_str=False)
    parameters = [
        parameter.replace(annotation=_as_written(parameter.annotation))
        for parameter in found.parameters.values()
    ][1 if drop_first else 0 :]
    empty = inspect.Signature.empty
    shown = found.replace(
        parameters=parameters,
        return_annotation=_as_written(found.return_annotation) if returns else empty,
    )
    text = str(shown)
    if len(text) <= WIDTH:
        return text
    # str(Signature) puts "/" and "*" between the parameters: split it as it does.
    inner = text[1 : text.index(")" + (" ->" if shown.return_annotation is not empty else ""))]
    head, tail = "(", text[len(inner) + 1 :]
    return head + "\n" + "".join(f"    {part},\n" for part in _split_top(inner)) + tail


def _split_top(text: str) -> list[str]:
    """``text`` split at the commas outside brackets and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for index, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:index].strip())
            start = index + 1
    return [*parts, text[start:].strip()]


def shared_doc(owner: type | None, name: str, value: Any) -> tuple[str | None, str]:
    """The docstring of ``owner.name`` and where it comes from: its own, else (for
    ``AsyncX``) ``X.name``'s, said as ``"X.name"``."""
    doc = inspect.getdoc(value)
    if doc or owner is None or not owner.__name__.startswith("Async"):
        return doc, ""
    import flashq_client

    twin = getattr(flashq_client, owner.__name__.removeprefix("Async"), None)
    member = inspect.getattr_static(twin, name, None) if twin is not None else None
    if member is None:
        return None, ""
    return inspect.getdoc(member), f"{twin.__name__}.{name}"  # type: ignore[union-attr]


def members(cls: type) -> Iterator[tuple[str, Any]]:
    """The public methods and properties ``cls`` has from flashq_client's own classes
    (bases first, then in the order the source defines them); ``__init__`` is the
    class's own entry."""
    seen: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if not klass.__module__.startswith("flashq_client"):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_"):
                continue
            if isinstance(value, staticmethod | classmethod):
                value = value.__func__
            if inspect.isfunction(value) or isinstance(value, property):
                seen[name] = value
    yield from seen.items()


def public_objects() -> list[tuple[str, list[tuple[str, Any]]]]:
    """The reference's sections: their titles and the objects in each."""
    import flashq_client
    from flashq_client import django_tasks

    exported = [(name, getattr(flashq_client, name)) for name in flashq_client.__all__]
    kinds: dict[str, list[tuple[str, Any]]] = {
        "Clients and workers": [],
        "Functions": [],
        "Errors": [],
        "Answers (TypedDicts)": [],
    }
    for name, value in exported:
        if inspect.isfunction(value):
            kinds["Functions"].append((name, value))
        elif inspect.isclass(value) and issubclass(value, BaseException):
            kinds["Errors"].append((name, value))
        elif is_typeddict(value):
            kinds["Answers (TypedDicts)"].append((name, value))
        elif inspect.isclass(value):
            kinds["Clients and workers"].append((name, value))

    def leading(item: tuple[str, Any]) -> tuple[int, str]:
        name = item[0]
        return (LEADING.index(name) if name in LEADING else len(LEADING), name)

    kinds["Clients and workers"].sort(key=leading)
    kinds["Errors"].sort(key=lambda item: (len(item[1].__mro__), item[0]))
    backend = [(name, getattr(django_tasks, name)) for name in django_tasks.__all__]
    return [*kinds.items(), ("Django tasks (`flashq_client.django_tasks`)", backend)]


# -- writing ------------------------------------------------------------------------


def _text_of(doc: Docstring) -> list[str]:
    """The summary and the text, a summary that runs over its line kept whole."""
    lines = [doc.short_description] if doc.short_description else []
    if doc.long_description:
        lines += [""] if doc.blank_after_short_description else []
        lines.append(doc.long_description)
    return [*lines, ""] if lines else []


def _sections(doc: Docstring) -> list[str]:
    lines: list[str] = []
    if doc.params:
        lines += ["**Args**", ""]
        lines += [f"- `{p.arg_name}`: {_one_line(p.description)}" for p in doc.params]
        lines.append("")
    if doc.returns and doc.returns.description:
        kind = f"`{doc.returns.type_name}`: " if doc.returns.type_name else ""
        lines += [f"**Returns**: {kind}{_one_line(doc.returns.description)}", ""]
    if doc.raises:
        lines += ["**Raises**", ""]
        lines += [f"- `{r.type_name}`: {_one_line(r.description)}" for r in doc.raises]
        lines.append("")
    retried = [meta for meta in doc.meta if meta.args == ["retried"]]
    if retried:
        lines += [f"**Retried**: {_one_line(retried[0].description)}", ""]
    return lines


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def _entry(title: str, heading: str, value: Any, owner: type | None) -> list[str]:
    lines = [f"{heading} {title}", ""]
    name = title.rpartition(".")[2]
    if isinstance(value, property):
        returns = inspect.signature(value.fget).return_annotation  # type: ignore[arg-type]
        lines += ["```python", f"{name}: {_as_written(returns)!r}  # a property", "```", ""]
    elif inspect.isclass(value) and _shows_constructor(value):
        lines += ["```python", f"class {name}{signature(value, drop_first=False, returns=False)}"]
        lines += ["```", ""]
    elif inspect.isfunction(value):
        method = owner is not None and not isinstance(
            inspect.getattr_static(owner, name), staticmethod
        )
        lines += ["```python", f"{name}{signature(value, drop_first=method)}", "```", ""]
    doc, source = shared_doc(owner, name, value)
    if source:
        lines += [f"*As `{source}`.*", ""]
    parsed = PARSER.parse(doc or "")
    return lines + _text_of(parsed) + _sections(parsed)


def _shows_constructor(cls: type) -> bool:
    """Whether ``cls`` is shown with its constructor: when one of flashq_client's classes
    gives it one (an error only when it is its own: they share FlashqError's)."""
    if issubclass(cls, BaseException):
        return "__init__" in vars(cls)
    return not is_typeddict(cls) and any(
        "__init__" in vars(klass) and klass.__module__.startswith("flashq_client")
        for klass in cls.__mro__
    )


def _typeddict(name: str, value: Any) -> list[str]:
    lines = [f"### {name}", ""]
    lines += _text_of(PARSER.parse(inspect.getdoc(value) or ""))
    for field, annotation in value.__annotations__.items():
        text = getattr(annotation, "__forward_arg__", None) or inspect.formatannotation(annotation)
        lines.append(f"- `{field}`: `{text}`")
    return [*lines, ""]


def render() -> str:
    lines = [
        "# flashq_client reference",
        "",
        "Written by `python clients/python/tools/reference.py` from the docstrings: do not",
        "edit it by hand. CI (`python3 dev.py lint`) and the test suite fail when it is stale.",
        "",
    ]
    for title, objects in public_objects():
        lines += [f"## {title}", ""]
        for name, value in objects:
            if is_typeddict(value):
                lines += _typeddict(name, value)
                continue
            lines += _entry(name, "###", value, None)
            if inspect.isclass(value):
                for member, attribute in members(value):
                    lines += _entry(f"{name}.{member}", "####", attribute, value)
    return "\n".join(lines).rstrip("\n") + "\n"


# -- the convention -----------------------------------------------------------------


def _parameters(function: Callable[..., Any], *, drop_first: bool) -> list[str]:
    names = [parameter.name for parameter in inspect.signature(function).parameters.values()]
    return names[1:] if drop_first else names


def problems_of(
    title: str,
    doc: str | None,
    function: Callable[..., Any] | None,
    *,
    client: bool,
    drop_first: bool = True,
) -> list[str]:
    """What ``doc`` lacks for the convention, each said as ``"<title>: <what>"``."""
    parsed = PARSER.parse(doc or "")
    found: list[str] = []
    if not parsed.short_description:
        found.append("no summary line")
    if function is not None:
        wanted = _parameters(function, drop_first=drop_first)
        given = [param.arg_name.lstrip("*") for param in parsed.params]
        missing = [name for name in wanted if name not in given]
        unknown = [name for name in given if name not in wanted]
        if missing:
            found.append("Args lacks " + ", ".join(missing))
        if unknown:
            found.append("Args names what the signature has not: " + ", ".join(unknown))
        returns = inspect.signature(function).return_annotation
        if client and returns not in ("None", None) and not parsed.returns:
            found.append("no Returns section")
    for raised in parsed.raises:
        if not _error_class_exists(raised.type_name or ""):
            found.append(f"Raises names an unknown class {raised.type_name!r}")
    if client and not parsed.raises:
        found.append("no Raises section")
    if client and not any(meta.args == ["retried"] for meta in parsed.meta):
        found.append("no Retried section")
    return [f"{title}: {what}" for what in found]


def _error_class_exists(name: str) -> bool:
    import flashq_client
    from flashq_client import django_tasks, errors

    value = getattr(errors, name, None) or getattr(flashq_client, name, None)
    value = value or getattr(django_tasks, name, None)
    value = value or getattr(builtins, name, None)
    return inspect.isclass(value) and issubclass(value, BaseException)


def lint() -> list[str]:
    """Every breach of the convention in the package's public docstrings."""
    found: list[str] = []
    for _, objects in public_objects():
        for name, value in objects:
            if inspect.isfunction(value):
                found += problems_of(
                    name, inspect.getdoc(value), value, client=False, drop_first=False
                )
                continue
            if not inspect.isclass(value):
                continue  # a constant (__version__) or a type alias: nothing to document
            found += problems_of(name, inspect.getdoc(value), None, client=False)
            if is_typeddict(value) or issubclass(value, BaseException):
                continue
            if "__init__" in vars(value):
                found += problems_of(name, inspect.getdoc(value), value.__init__, client=False)
            for member, attribute in members(value):
                doc, _ = shared_doc(value, member, attribute)
                function = None if isinstance(attribute, property) else attribute
                found += problems_of(
                    f"{name}.{member}",
                    doc,
                    function,
                    client=name in CLIENTS and member not in LOCAL_METHODS,
                )
    return sorted(set(found), key=found.index)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--check", action="store_true", help="exit 1 with a diff when stale")
    what.add_argument("--lint", action="store_true", help="exit 1 naming bad docstrings")
    parser.add_argument("--output", type=Path, default=REFERENCE, help="the file to write")
    args = parser.parse_args(argv)
    if args.lint:
        found = lint()
        for line in found:
            print(line)
        print(f"{len(found)} docstring problem(s)" if found else "docstrings: all as agreed")
        return 1 if found else 0
    text = render()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current == text:
            return 0
        diff = difflib.unified_diff(
            current.splitlines(keepends=True),
            text.splitlines(keepends=True),
            f"{args.output.name} (in the repository)",
            f"{args.output.name} (from the source)",
        )
        sys.stdout.writelines(diff)
        print(f"\n{args.output} is stale: run python {Path(__file__).as_posix()}", flush=True)
        return 1
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
