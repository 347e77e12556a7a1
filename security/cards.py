"""The card-number guard (PCI DSS hygiene): payment card numbers and card secrets must
not be queued. Plain values in, findings out.

A candidate is a run of 12 to 19 digits, unbroken or grouped by single spaces or dashes,
or in three or more groups joined by single dots, underscores, slashes or colons; it is
not part of a longer run of digits, nor of a UUID, and touches no hex letter (other
letters do not matter: see ``_CANDIDATE``). It counts as a card number when it passes
the Luhn check and starts like a card brand of that length. Field names that hold card
secrets (CVV, track data, PIN) are refused whatever their value. Findings carry at most
the first 6 and last 4 digits."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from kernel.problems import CardNumberDetected, FieldError, pointer_segment

_UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
# Both kinds of candidate may touch any letter but a hex one: ``order4111111111111111``
# is a card number written into a label, but digits touching a-f/A-F are most likely
# part of a hex hash or token (SHA digests and UUIDs used as idempotency keys have long
# all-digit stretches, which would pass the Luhn check about once in ten), so they are
# left alone.
# 12 to 19 digits, each optionally followed by one space or dash (4111 1111-1111 1111).
_CANDIDATE = re.compile(r"(?<![0-9A-Fa-f])\d(?:[ -]?\d){11,18}(?![0-9A-Fa-f])")
# Three or more groups joined by single dots, underscores, slashes or colons
# (4111.1111.1111.1111, 4111_1111_1111_1111, 4111/1111/1111/1111, and 4111:1111:... as a
# queue name may be written). Two groups are not enough: that is how a decimal number
# is written (2.718281828459045, 1732890000.123456).
_JOINERS = "._/:"
_JOINED = re.compile(r"(?<![0-9A-Fa-f])\d+(?:[._/:]\d+){2,}(?![0-9A-Fa-f])")
_JOINER = re.compile(r"[._/:]")
_ANY_DIGIT_RUN = re.compile(r"\d[\d ._/:-]{10,}\d")
_MIN_DIGITS, _MAX_DIGITS, _MIN_JOINED_GROUPS = 12, 19, 3

# (first digits as an inclusive range of prefixes, allowed lengths)
_BRANDS: tuple[tuple[int, int, frozenset[int]], ...] = (
    (4, 4, frozenset({13, 16, 19})),  # Visa
    (51, 55, frozenset({16})),  # Mastercard
    (2221, 2720, frozenset({16})),  # Mastercard 2-series
    (34, 34, frozenset({15})),  # American Express
    (37, 37, frozenset({15})),
    (6011, 6011, frozenset({16, 17, 18, 19})),  # Discover
    (644, 649, frozenset({16, 17, 18, 19})),
    (65, 65, frozenset({16, 17, 18, 19})),
    (3528, 3589, frozenset({16, 17, 18, 19})),  # JCB
    (300, 305, frozenset({14, 15, 16, 17, 18, 19})),  # Diners Club
    (36, 36, frozenset({14, 15, 16, 17, 18, 19})),
    (38, 39, frozenset({16, 17, 18, 19})),
    (62, 62, frozenset({16, 17, 18, 19})),  # UnionPay
    (50, 50, frozenset(range(12, 20))),  # Maestro
    (56, 58, frozenset(range(12, 20))),
    (6304, 6304, frozenset(range(12, 20))),
    (6759, 6759, frozenset(range(12, 20))),
    (676770, 676774, frozenset(range(12, 20))),
)

SECRET_FIELDS = frozenset(
    {
        "cvv",
        "cvv2",
        "cvc",
        "cvc2",
        "csc",
        "cav2",
        "securitycode",
        "cardsecuritycode",
        "track",
        "track1",
        "track2",
        "trackdata",
        "magstripe",
        "pin",
        "pinblock",
        "pincode",
    }
)


@dataclass(frozen=True)
class CardFinding:
    path: str  # JSON Pointer of the value (or key) that holds it
    masked: str  # at most the first 6 and last 4 digits: 411111******1111
    secret_field: bool = False
    in_key: bool = False  # then path is the object's: a key is never echoed back


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def branded(digits: str) -> bool:
    length = len(digits)
    for low, high, lengths in _BRANDS:
        prefix = int(digits[: len(str(low))])
        if low <= prefix <= high and length in lengths:
            return True
    return False


def mask(digits: str) -> str:
    return f"{digits[:6]}{'*' * (len(digits) - 10)}{digits[-4:]}"


# Every brand's numbers start with one of these: most look-alikes (times, dates, ids
# starting 0 or 1) are done with at this one comparison.
_BRAND_FIRST_DIGITS = frozenset("23456")


def _is_card(digits: str) -> bool:
    return (
        _MIN_DIGITS <= len(digits) <= _MAX_DIGITS
        and digits[0] in _BRAND_FIRST_DIGITS
        and luhn_valid(digits)
        and branded(digits)
    )


def _joined_chunks(match: re.Match[str]) -> Iterator[tuple[int, int, str]]:
    """The candidates of one run of joined groups, read as the spaced form is: from the
    first group, as many whole groups as fit in 19 digits; then on from the next. Only
    chunks that start like a brand are built (an ISO time's 08:20:36.123456 is not)."""
    groups = _JOINER.split(match.group())
    starts, position = [], match.start()
    for group in groups:
        starts.append(position)
        position += len(group) + 1
    index = 0
    while index < len(groups):
        total, end = 0, index
        while end < len(groups) and total + len(groups[end]) <= _MAX_DIGITS:
            total += len(groups[end])
            end += 1
        if end - index >= _MIN_JOINED_GROUPS and total >= _MIN_DIGITS:
            if groups[index][0] in _BRAND_FIRST_DIGITS:
                last = end - 1
                yield starts[index], starts[last] + len(groups[last]), "".join(groups[index:end])
            index = end
        else:
            index += 1


def _spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, digits) of each card number in ``text``, in order."""
    candidates = [
        (m.start(), m.end(), re.sub(r"[ -]", "", m.group())) for m in _CANDIDATE.finditer(text)
    ]
    if any(joiner in text for joiner in _JOINERS):
        candidates += [chunk for m in _JOINED.finditer(text) for chunk in _joined_chunks(m)]
        candidates.sort()
    found: list[tuple[int, int, str]] = []
    for start, end, digits in candidates:
        if (not found or start >= found[-1][1]) and _is_card(digits):
            found.append((start, end, digits))
    return found


def card_numbers_in(text: str) -> list[str]:
    """The card numbers written in ``text``, digits only."""
    if not _ANY_DIGIT_RUN.search(text):
        return []
    if "-" in text:
        text = _UUID.sub(" ", text)
    return [digits for _, _, digits in _spans(text)]


# Also as the end of a longer name (card_cvv, billingTrack2); the short, ambiguous ones
# (pin, track, csc) only as the whole name.
SECRET_SUFFIXES = (
    "cvv",
    "cvv2",
    "cvc",
    "cvc2",
    "cav2",
    "securitycode",
    "track1",
    "track2",
    "trackdata",
    "pinblock",
)


def is_secret_field(key: str) -> bool:
    name = re.sub(r"[^a-z0-9]", "", key.lower())
    return name in SECRET_FIELDS or name.endswith(SECRET_SUFFIXES)


def has_card_number(text: str) -> bool:
    return bool(card_numbers_in(text))


def mask_card_numbers(text: str) -> str:
    """``text`` with each card number in it written as its first 6 and last 4 digits,
    for a log line. Text without one costs what ``card_numbers_in`` costs (one regex
    search, usually) and comes back as it was. A number the in-place pass cannot reach
    (glued to a UUID, which the check reads as a separator) takes the whole text with
    it: ``[redacted]``."""
    found = set(card_numbers_in(text))
    if not found:
        return text
    parts, done = [], 0
    for start, end, digits in _spans(text):
        if digits in found:
            parts += [text[done:start], mask(digits)]
            done = end
    result = "".join([*parts, text[done:]])
    return "[redacted]" if card_numbers_in(result) else result


def find_cards_in_text(text: str, path: str) -> list[CardFinding]:
    """The card numbers in one string the client chose (an idempotency key, a tag, a
    progress message, a header) at ``path``: regex-first, O(len), no walk."""
    return [CardFinding(path, mask(digits)) for digits in card_numbers_in(text)]


def find_cards(value: Any, path: str) -> list[CardFinding]:
    """Every card number (in strings, integers and keys) and every card-secret field with
    a value, under ``value`` at JSON Pointer ``path``."""
    return list(_walk(value, path))


def _walk(value: Any, path: str) -> Iterator[CardFinding]:
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            yield from (CardFinding(where or "/", mask(d)) for d in card_numbers_in(item))
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int):
            if item >= 10**11:
                yield from (CardFinding(where or "/", mask(d)) for d in card_numbers_in(str(item)))
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{where}/{pointer_segment(key)}"
                for digits in card_numbers_in(key):
                    yield CardFinding(where or "/", mask(digits), in_key=True)
                if is_secret_field(key) and child not in (None, "", [], {}):
                    yield CardFinding(child_path, "", secret_field=True)
                stack.append((child, child_path))
        elif isinstance(item, list):
            stack.extend((child, f"{where}/{index}") for index, child in enumerate(item))


def card_problem(findings: list[CardFinding]) -> CardNumberDetected | None:
    """The 422 for these findings (field paths, and at most BIN and last 4), or None."""
    if not findings:
        return None
    return CardNumberDetected(
        "Card numbers and card secrets may not be queued.",
        errors=[
            FieldError(
                finding.path,
                "is a card-secret field (CVV, track data or PIN)"
                if finding.secret_field
                else "has a key that is a payment card number"
                if finding.in_key
                else "holds a payment card number",
            )
            for finding in findings
        ],
        masked=[finding.masked for finding in findings if finding.masked],
    )


def not_allowed(
    findings: Iterable[CardFinding], *, root: str, allowed: Iterable[str]
) -> list[CardFinding]:
    """The findings not covered by an allow-list of JSON Pointers relative to ``root``
    (a queue's known false positives: ``/order/reference`` covers that field and all
    below it). Card-secret fields are never allowed."""
    prefixes = [root + pointer for pointer in allowed]
    return [
        finding
        for finding in findings
        if finding.secret_field
        or not any(finding.path == p or finding.path.startswith(p + "/") for p in prefixes)
    ]


def validate_pointer_list(value: object) -> list[str]:
    """A list of JSON Pointers (``/a/b``); raises ValueError naming the bad one."""
    if not isinstance(value, list):
        raise ValueError('a list of JSON Pointers, e.g. ["/order/reference"]')
    for item in value:
        if not isinstance(item, str) or not item.startswith("/") or len(item) > 500:
            raise ValueError(f"{item!r} is not a JSON Pointer like /order/reference")
    return value
