"""What a check reports: which rule, where, and what is wrong."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    """A broken rule. ``rule`` is a stable id (``dockerfile.non-root``), ``where`` the file
    relative to the repository (with ``:line`` when the check knows it), ``message``
    what is wrong, in words an operator can act on."""

    rule: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message} [{self.rule}]"
