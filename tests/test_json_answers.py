"""Request JSON keeps its exact answers whichever parser reads it (queues.api.parsers:
orjson where it agrees with the json module, the json module otherwise).

tests/json_answers.json holds the answers (status, content type, problem+json body; for
a push that went in, the data getJob then shows) given by the json module's parser
before orjson came in, for bodies each parser reads differently or refuses: integers
past 64 bits, non-finite numbers, lone surrogates, invalid UTF-8, duplicate keys, a BOM
and deep nesting, sent as a push, as a batch push's item and as an ack's result."""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from queues.models import Job
from security.jsonread import loads
from security.payloads import NonFiniteNumber, finite_float

from .support import Api, pull, push

BIG = b"18446744073709551616"  # 2**64
CASES: dict[str, bytes] = {
    "big_int_in_data": b'{"data": {"n": ' + BIG + b"}}",
    "u64_max_in_data": b'{"data": {"n": 18446744073709551615}}',
    "neg_big_in_data": b'{"data": {"n": -9223372036854775809}}',
    "big_int_priority": b'{"data": {}, "priority": ' + BIG + b"}",
    "big_int_delay": b'{"data": {}, "delay": -99999999999999999999999}',
    "big_int_in_tags": b'{"data": {}, "tags": [' + BIG + b"]}",
    "digits_in_string": b'{"data": {"s": "12345678901234567890123"}}',
    "nan": b'{"data": {"n": NaN}}',
    "infinity": b'{"data": {"n": Infinity}}',
    "neg_infinity": b'{"data": {"n": -Infinity}}',
    "1e400": b'{"data": {"n": 1e400}}',
    "1e400_priority": b'{"data": {}, "priority": 1e400}',
    "max_double_overflow": b'{"data": {"n": 1.7976931348623159e308}}',
    "tiny_float": b'{"data": {"n": 1e-400, "m": -0.0, "k": 1.5e-7}}',
    "surrogate_in_data": b'{"data": {"s": "\\ud800"}}',
    "surrogate_key_in_data": b'{"data": {"\\udfff": 1}}',
    "surrogate_in_tag": b'{"data": {}, "tags": ["\\ud800"]}',
    "surrogate_top_key": b'{"data": {}, "\\ud800": 1}',
    "reversed_pair": b'{"data": {"s": "\\ude00\\ud83d"}}',
    "valid_pair": b'{"data": {"s": "\\ud83d\\ude00"}}',
    "invalid_utf8": b'{"data": {"s": "\xff"}}',
    "encoded_surrogate": b'{"data": {}, "key": "\xed\xa0\x80"}',
    "utf16": '{"data": {}}'.encode("utf-16"),
    "dup_keys_data": b'{"data": {"a": 1, "a": 2}}',
    "dup_keys_top": b'{"data": {"a": 1}, "data": {"b": 2}}',
    "dup_priority": b'{"data": {}, "priority": 1, "priority": "x"}',
    "bom": b'\xef\xbb\xbf{"data": {}}',
    "nul_escape": b'{"data": {"s": "a\\u0000b"}}',
    "raw_control": b'{"data": {"s": "a\x01b"}}',
    "trailing_garbage": b'{"data": {}} x',
    "trailing_comma": b'{"data": {},}',
    "leading_zero": b'{"data": {"n": 01}}',
    "deep_33": b'{"data": ' + b'{"a": ' * 33 + b"1" + b"}" * 33 + b"}",
    "deep_64": b'{"data": ' + b'{"a": ' * 64 + b"1" + b"}" * 64 + b"}",
    "deep_1100": b'{"data": ' + b"[" * 1100 + b"]" * 1100 + b"}",
    "deep_5000": b'{"data": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    "top_array": b'[{"data": {}}]',
    "top_string": b'"x"',
    "not_json": b"nope",
    "whitespace": b' \t\n{"data": {"u": "\\u00e9\\/"}}\r\n',
}
ANSWERS = json.loads((Path(__file__).parent / "json_answers.json").read_text())


def _call(api: Api, token: str, path: str, body: bytes) -> list[Any]:
    response = api.client.post(
        "/api/v1" + path,
        body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    return [response.status_code, response["Content-Type"], json.loads(response.content)]


@pytest.mark.django_db
def test_each_body_gets_the_answer_it_got_from_the_json_module(api: Api, full: str) -> None:
    answers: dict[str, list[Any]] = {}
    for name, body in CASES.items():
        answer = _call(api, full, "/queues/q/jobs", body)
        if answer[0] in (200, 201):
            job = answer[2]
            answer.append(api.get(f"/jobs/{job['id']}?reveal=true", as_=full).body["data"])
            answer[2] = {
                field: job[field] for field in ("state", "priority", "tags", "key") if field in job
            }
        answers["push:" + name] = answer
        batch = _call(api, full, "/queues/q/jobs/batch", b'{"jobs": [' + body + b"]}")
        answers["batch:" + name] = [*batch[:2], batch[2] if batch[0] >= 400 else batch[0]]
    Job.objects.all().delete()
    push(api, full, queue="q")
    [job] = pull(api, full, queue="q")
    for name, body in CASES.items():
        if body.startswith(b'{"data": {'):
            lease = str(uuid.uuid4()).encode()
            raw = b'{"lease_id": "' + lease + b'", "result": ' + body[len(b'{"data": ') :]
            answers["ack:" + name] = _call(api, full, f"/jobs/{job['id']}/ack", raw)
    assert answers.keys() == ANSWERS.keys()
    for name, expected in ANSWERS.items():
        assert answers[name] == expected, name


def _stdlib(body: bytes) -> Any:
    """The parse of before orjson: the json module on strictly decoded UTF-8."""

    def reject(name: str) -> None:
        raise ValueError(name)

    return json.loads(body.decode("utf-8"), parse_constant=reject, parse_float=finite_float)


def _outcome(parse: Any, body: bytes) -> tuple[str, str]:
    try:
        value = parse(body)
    except NonFiniteNumber:
        return "non-finite", ""
    except (ValueError, RecursionError):
        return "error", ""
    # repr tells 1 from 1.0 and -0.0 from 0.0, and shows a lone surrogate as it is.
    return "value", repr(value)


def test_integers_past_64_bits_stay_exact_integers() -> None:
    for number in (2**64, 2**64 - 1, -(2**63) - 1, -(2**63), 10**30, -(10**40)):
        body = json.dumps({"n": number, "s": "x"}).encode()
        value = loads(body)["n"]
        assert type(value) is int and value == number


def test_non_finite_numbers_and_lone_surrogates_keep_their_answers() -> None:
    with pytest.raises(NonFiniteNumber):
        loads(b'{"n": 1e400}')
    for literal in (b"NaN", b"Infinity", b"-Infinity"):
        with pytest.raises(ValueError):
            loads(b'{"n": ' + literal + b"}")
    assert loads(b'["\\ud800", {"\\udfff": 1}]') == ["\ud800", {"\udfff": 1}]
    assert loads(b'{"a": 1, "a": 2}') == {"a": 2}
    assert math.copysign(1, loads(b"-0.0")) == -1


_TOKENS = st.sampled_from(
    [
        "{", "}", "[", "]", ",", ":", " ", '"', '"a"', '"\\ud800"', '"\\ud83d\\ude00"', "\\u0000",
        "1", "0", "-", ".", "e", "E", "+", "9" * 19, "18446744073709551616", "1e400",
        "NaN", "Infinity", "true", "null", "\ufeff", "\x01", "é", "\\", "0.1", "1e-400",
    ]
)  # fmt: skip


@given(st.lists(_TOKENS, max_size=25).map("".join), st.sampled_from(["utf-8", "utf-16"]))
def test_any_body_parses_as_the_json_module_parses_it(text: str, encoding: str) -> None:
    body = text.encode(encoding, "surrogatepass")
    assert _outcome(loads, body) == _outcome(_stdlib, body)


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
))  # fmt: skip
def test_any_json_value_parses_back_to_itself(value: Any) -> None:
    body = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    assert _outcome(loads, body) == _outcome(_stdlib, body)


def test_nesting_below_orjsons_limit_is_refused_as_too_deep(api: Api, full: str) -> None:
    """1000 levels: once a "not valid JSON" from the json module's recursion limit (at a
    depth that varied with the caller's stack), now read and refused like any body
    nested past MAX_DEPTH, whatever the stack."""
    body = b'{"data": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    status, _, problem = _call(api, full, "/queues/q/jobs", body)
    assert (status, problem["code"]) == (400, "invalid_input")
    assert problem["errors"][0]["message"] == "is nested more than 64 levels deep"
