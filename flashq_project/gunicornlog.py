"""gunicorn's logs without card numbers (deploy/gunicorn.conf.py, ``logger_class``).

The API refuses a queue name that holds a card number and stores nothing, but gunicorn
writes the request's path to its access log before anyone looks at it, and a request
line it refuses itself to its error log. This logger writes each card number there as
the audit record keeps it, first 6 and last 4 digits (security.cards.mask_card_numbers).

In the access log only the atoms the format uses are looked at, and of those only the
ones a client can write (the path, the request line, the query, any header, the
environ); the numbers and times gunicorn makes itself are skipped. A value without a
long digit run costs one regex search."""

from __future__ import annotations

import datetime
import logging
import re
from typing import Any
from urllib.parse import quote, unquote_plus

from gunicorn.config import Config  # type: ignore[import-untyped]
from gunicorn.glogging import Logger  # type: ignore[import-untyped]

from security.cards import has_card_number, mask_card_numbers

#: Atoms gunicorn makes from its own numbers and clock: nothing a client wrote.
SERVER_MADE_ATOMS = frozenset({"l", "t", "s", "b", "B", "T", "D", "M", "L", "p"})
#: What stays as it is when a decoded value is written back percent-encoded: the URI's
#: reserved characters, the spaces of the request line and the ``*`` of masked digits;
#: never a control character or a quote (no forged log line, no broken quoting).
URI_SAFE = " !#$&'()*+,/:;=?@[]~"


def client_written_atoms(access_log_format: str) -> frozenset[str]:
    """The atoms of ``access_log_format`` a client can write, as gunicorn looks them up
    (``{Header}i`` in lower case)."""
    names = re.findall(r"%\(([^)]*)\)", access_log_format)
    return frozenset(
        name.lower() if name.startswith("{") else name
        for name in names
        if name not in SERVER_MADE_ATOMS
    )


def redact(value: str) -> str:
    """``value`` with every card number masked. The raw request line, query and headers
    are percent-encoded as sent: a number found only once decoded is masked in the
    decoded value, which is written back percent-encoded."""
    masked = mask_card_numbers(value)
    if "%" in masked or "+" in masked:
        decoded = unquote_plus(masked)
        if has_card_number(decoded):
            return quote(mask_card_numbers(decoded), safe=URI_SAFE)
    return masked


class CardMaskingFilter(logging.Filter):
    """For the error log, whose messages quote a request line gunicorn refuses ("Invalid
    request from ip=...: Invalid HTTP request line: 'GET /...'") or the URI of a request
    that failed."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


#: One filter, so that a logger set up again does not stack them.
ERROR_LOG_FILTER = CardMaskingFilter()


class CardMaskingLogger(Logger):  # type: ignore[misc]  # gunicorn ships no type hints
    def setup(self, cfg: Config) -> None:
        super().setup(cfg)
        self.checked_atoms = client_written_atoms(cfg.access_log_format)
        self.error_log.addFilter(ERROR_LOG_FILTER)

    def atoms(
        self, resp: Any, req: Any, environ: dict[str, Any], request_time: datetime.timedelta
    ) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for name in self.checked_atoms:
            value = atoms.get(name)
            if isinstance(value, str):
                atoms[name] = redact(value)
        return atoms
