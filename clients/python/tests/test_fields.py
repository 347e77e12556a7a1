"""End-to-end encrypted fields without a server: sealing and opening (every JSON type,
nested and array paths, missing paths), what does not open (another key, a changed
value, another queue or field), key rotation, keys kept out of sight, and what the
client sends for each kind of push."""

from __future__ import annotations

import asyncio
import base64
import json
import pickle
from typing import Any

import httpx
import pytest
from flashq_client import (
    AsyncClient,
    Client,
    FieldDecryptionError,
    FieldKeys,
    FlashqError,
    new_key,
    open_fields,
    seal_fields,
)
from flashq_client.fields import check_sealed, field_settings, open_job, parse_path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

K1, K2 = bytes(range(32)), bytes(range(100, 132))
KEYS = FieldKeys({"k1": K1})
TOKEN = "fq_secret_" + "x" * 30

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


# No deadline: a loaded machine's clock says nothing about the property.
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_every_json_value_comes_back_as_it_went(value: Any) -> None:
    sealed = seal_fields({"secret": value, "plain": 1}, "q", ["secret"], KEYS)
    assert isinstance(sealed["secret"], str) and sealed["secret"].startswith("fq1:k1:")
    assert sealed["plain"] == 1
    assert open_fields(sealed, "q", KEYS) == {"secret": value, "plain": 1}


def test_nested_and_array_paths_are_sealed_and_the_rest_is_left_alone() -> None:
    data: dict[str, Any] = {
        "ssn": "078-05-1120",
        "card": {"token": "tok_visa", "brand": "visa"},
        "items": [{"iban": "DE89370400440532013000", "n": 1}, {"n": 2}, {"iban": None}],
        "userId": "u-42",
    }
    paths = ["ssn", "card.token", "items.*.iban"]
    sealed = seal_fields(data, "payments", paths, KEYS)
    assert sealed["userId"] == "u-42" and sealed["card"]["brand"] == "visa"
    assert sealed["items"][1] == {"n": 2} and sealed["items"][0]["n"] == 1
    for value in (
        sealed["ssn"],
        sealed["card"]["token"],
        *[sealed["items"][i]["iban"] for i in (0, 2)],
    ):
        assert value.startswith("fq1:k1:")
    assert "078-05-1120" not in json.dumps(sealed) and "tok_visa" not in json.dumps(sealed)
    assert data["card"]["token"] == "tok_visa", "the caller's data is not changed"  # noqa: S105
    assert open_fields(sealed, "payments", KEYS) == data


def test_a_missing_path_is_skipped_and_nothing_to_seal_costs_nothing() -> None:
    data = {"card": "not an object", "items": {"not": "an array"}}
    assert seal_fields(data, "q", ["ssn", "card.token", "items.*.iban"], KEYS) is data
    assert seal_fields(data, "q", [], None) is data
    assert open_fields(data, "q", None) is data


def test_each_value_gets_its_own_nonce() -> None:
    first = seal_fields({"a": "same"}, "q", ["a"], KEYS)["a"]
    second = seal_fields({"a": "same"}, "q", ["a"], KEYS)["a"]
    assert first != second
    assert len(base64.urlsafe_b64decode(first.split(":")[2] + "==")) == 12 + len('"same"') + 16


def test_a_value_already_sealed_is_not_sealed_twice() -> None:
    once = seal_fields({"ssn": "1"}, "q", ["ssn"], KEYS)
    assert seal_fields(once, "q", ["ssn"], KEYS) is once


def _sealed_ssn(queue: str = "q", keys: FieldKeys = KEYS) -> dict[str, Any]:
    return dict(seal_fields({"ssn": "078-05-1120"}, queue, ["ssn"], keys))


def _refusal(data: Any, queue: str, keys: FieldKeys | None) -> FieldDecryptionError:
    with pytest.raises(FieldDecryptionError) as caught:
        open_fields(data, queue, keys)
    error = caught.value
    assert isinstance(error, FlashqError) and error.status is None
    for secret in ("078-05-1120", base64.b64encode(K1).decode(), base64.b64encode(K2).decode()):
        assert secret not in str(error) and secret not in repr(error)
    return error


def test_a_key_id_it_does_not_hold_is_field_key_missing() -> None:
    error = _refusal(_sealed_ssn(), "q", FieldKeys({"k2": K2}))
    assert error.code == "field_key_missing"
    assert "ssn" in str(error) and "'k1'" in str(error)
    assert _refusal(_sealed_ssn(), "q", None).code == "field_key_missing"


def test_another_key_under_the_same_id_is_field_open_failed() -> None:
    assert _refusal(_sealed_ssn(), "q", FieldKeys({"k1": K2})).code == "field_open_failed"


def test_a_changed_value_does_not_open() -> None:
    sealed = _sealed_ssn()["ssn"]
    head, body = sealed.rsplit(":", 1)
    raw = bytearray(base64.urlsafe_b64decode(body + "=="))
    for index in (0, 12, len(raw) - 1):  # the nonce, the ciphertext, the tag
        changed = bytearray(raw)
        changed[index] ^= 1
        text = head + ":" + base64.urlsafe_b64encode(bytes(changed)).decode().rstrip("=")
        assert _refusal({"ssn": text}, "q", KEYS).code == "field_open_failed"
    for broken in (sealed[:20], sealed + "!", "fq1:k1:", "fq1:", "fq1:k1:AAAA"):
        assert _refusal({"ssn": broken}, "q", KEYS).code == "field_open_failed"


def test_a_value_moved_to_another_queue_or_field_does_not_open() -> None:
    value = _sealed_ssn("payments")["ssn"]
    assert _refusal({"ssn": value}, "refunds", KEYS).code == "field_open_failed"
    assert _refusal({"taxId": value}, "payments", KEYS).code == "field_open_failed"
    assert _refusal({"ssn": [value]}, "payments", KEYS).code == "field_open_failed"
    assert _refusal({"a": {"ssn": value}}, "payments", KEYS).code == "field_open_failed"
    assert open_fields({"ssn": value}, "payments", KEYS) == {"ssn": "078-05-1120"}


def test_array_elements_may_be_reordered_but_not_moved_out() -> None:
    sealed = seal_fields({"items": [{"iban": "A"}, {"iban": "B"}]}, "q", ["items.*.iban"], KEYS)
    swapped = {"items": list(reversed(sealed["items"]))}
    assert open_fields(swapped, "q", KEYS) == {"items": [{"iban": "B"}, {"iban": "A"}]}
    assert _refusal({"iban": sealed["items"][0]["iban"]}, "q", KEYS).code == "field_open_failed"


def test_rotation_seals_with_the_current_key_and_opens_with_any() -> None:
    old = _sealed_ssn(keys=FieldKeys({"k1": K1}))
    rotated = FieldKeys({"k1": K1, "k2": K2})
    assert rotated.current == "k2" and rotated.ids == ("k1", "k2")
    new = _sealed_ssn(keys=rotated)
    assert new["ssn"].startswith("fq1:k2:")
    assert open_fields(old, "q", rotated) == open_fields(new, "q", rotated)
    assert FieldKeys({"k1": K1, "k2": K2}, current="k1").current == "k1"
    # Shredding: a value whose key is dropped never opens again.
    assert _refusal(old, "q", FieldKeys({"k2": K2})).code == "field_key_missing"


def test_keys_stay_out_of_repr_str_and_pickles() -> None:
    keys = FieldKeys({"k1": K1, "k2": K2})
    shown = repr(keys) + str(keys)
    assert shown.count("FieldKeys(ids=['k1', 'k2'], current='k2')") == 2
    for key in (K1, K2):
        for form in (repr(key), key.hex(), base64.b64encode(key).decode()):
            assert form not in shown
    with pytest.raises(TypeError):
        pickle.dumps(keys)
    client = Client("http://127.0.0.1:9", TOKEN, field_keys=keys, encrypt_fields=["ssn"])
    assert base64.b64encode(K1).decode() not in repr(client) + repr(vars(client))


def test_malformed_keys_are_refused_without_showing_them() -> None:
    secret = b"s" * 31
    for keys, current in (
        ({}, None),
        ({"k1": secret}, None),
        ({"k:1": K1}, None),
        ({"k1": K1}, "k9"),
    ):
        with pytest.raises(ValueError) as caught:
            FieldKeys(keys, current=current)
        assert "sss" not in str(caught.value)
    assert len(new_key()) == 32 and new_key() != new_key()


def test_a_bare_or_broken_key_in_the_environment_is_never_shown() -> None:
    bare = base64.urlsafe_b64encode(K1).decode().rstrip("=")  # a valid-looking key id
    short = base64.b64encode(b"s" * 31).decode()
    for text in (bare, f"k1:{base64.b64encode(K1).decode()} {bare}", f"{short[:8]}:{short}"):
        with pytest.raises(ValueError) as caught:
            FieldKeys.from_text(text, source="FLASHQ_FIELD_KEYS")
        message = str(caught.value)
        assert bare not in message and short not in message and short[:8] not in message
        assert message.startswith("FLASHQ_FIELD_KEYS: entry ")


def test_keys_come_from_the_environment_or_a_file(tmp_path: Any) -> None:
    one, two = (base64.b64encode(key).decode() for key in (K1, K2))
    keys = FieldKeys.from_env({"FLASHQ_FIELD_KEYS": f"k1:{one}, k2:{two}"})
    assert keys is not None and keys.ids == ("k1", "k2") and keys.current == "k2"
    sealed = _sealed_ssn(keys=FieldKeys({"k2": K2}))
    assert open_fields(sealed, "q", keys) == {"ssn": "078-05-1120"}
    path = tmp_path / "keys"
    path.write_text(f"k2:{base64.urlsafe_b64encode(K2).decode().rstrip('=')}\n")
    from_file = FieldKeys.from_env({"FLASHQ_FIELD_KEYS_FILE": str(path)})
    assert from_file is not None and open_fields(sealed, "q", from_file)["ssn"] == "078-05-1120"
    assert FieldKeys.from_env({}) is None
    for text in (f"k1:{one[:-4]}", f"k1{one}", f"k1:{one},k1:{two}", "k1:!!!!"):
        with pytest.raises(ValueError, match="FLASHQ_FIELD_KEYS: entry") as caught:
            FieldKeys.from_env({"FLASHQ_FIELD_KEYS": text})
        assert one[:8] not in str(caught.value)
    with pytest.raises(ValueError, match="FLASHQ_FIELD_KEYS_FILE cannot be read"):
        FieldKeys.from_env({"FLASHQ_FIELD_KEYS_FILE": str(tmp_path / "none")})


def test_paths_and_settings_are_checked() -> None:
    assert parse_path("items.*.iban") == ("items", None, "iban")
    for bad in ("", "a..b", ".a", "a."):
        with pytest.raises(ValueError):
            parse_path(bad)
    with pytest.raises(ValueError, match="a list of paths"):
        field_settings(KEYS, "ssn")
    with pytest.raises(ValueError, match="lies within"):
        field_settings(KEYS, ["card", "card.token"])
    with pytest.raises(ValueError, match="needs field_keys"):
        field_settings(None, ["ssn"])
    with pytest.raises(ValueError, match="not JSON"):
        seal_fields({"ssn": float("nan")}, "q", ["ssn"], KEYS)
    assert field_settings(KEYS, ["ssn", "card.token"]) == (KEYS, ("ssn", "card.token"))


def test_a_client_reads_its_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASHQ_FIELD_KEYS", "k7:" + base64.b64encode(K1).decode())
    client = Client("http://127.0.0.1:9", TOKEN, encrypt_fields=["ssn"])
    assert client.field_keys is not None and client.field_keys.ids == ("k7",)


def test_open_job_gives_the_handler_clear_data_and_leaves_the_job_alone() -> None:
    job: dict[str, Any] = {"id": "j1", "queue": "q", "data": _sealed_ssn(), "attempts": 1}
    opened = open_job(job, KEYS)
    assert opened["data"] == {"ssn": "078-05-1120"} and opened["attempts"] == 1
    assert job["data"]["ssn"].startswith("fq1:")
    plain = {"id": "j2", "queue": "q", "data": {"n": 1}}
    assert open_job(plain, None) is plain


def _recording_client() -> tuple[Client, list[Any]]:
    sent: list[Any] = []

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        sent.append(body)
        if request.url.path.endswith("/jobs/batch"):
            return httpx.Response(201, json={"jobs": []})
        node = {"id": "j", "queue": "q", "state": "waiting", "children": []}
        return httpx.Response(201, json=node)

    client = Client(
        "http://127.0.0.1:9",
        TOKEN,
        field_keys=KEYS,
        encrypt_fields=["ssn", "card.token"],
        transport=httpx.MockTransport(answer),
    )
    return client, sent


def test_every_push_sends_the_fields_sealed_for_the_queue_they_go_to() -> None:
    client, sent = _recording_client()
    data = {"ssn": "078-05-1120", "card": {"token": "tok_visa"}, "n": 1}
    client.push("payments", data)
    client.push_batch("payments", [{"data": data}, {"data": {"n": 2}}])
    client.push_flow(
        "reports",
        {"data": data},
        [
            {
                "queue": "exports",
                "job": {"data": data},
                "children": [{"queue": "mail", "job": {"data": data}}],
            }
        ],
    )
    client.put_schedule("nightly", "tick", every_ms=60_000, data=data)
    assert "078-05-1120" not in json.dumps(sent) and "tok_visa" not in json.dumps(sent)
    push, batch, flow, schedule = sent
    assert open_fields(push["data"], "payments", KEYS) == data
    assert open_fields(batch["jobs"][0]["data"], "payments", KEYS) == data
    assert batch["jobs"][1]["data"] == {"n": 2}
    assert open_fields(flow["job"]["data"], "reports", KEYS) == data
    child = flow["children"][0]
    assert open_fields(child["job"]["data"], "exports", KEYS) == data
    assert open_fields(child["children"][0]["job"]["data"], "mail", KEYS) == data
    assert _refusal(child["job"]["data"], "reports", KEYS).code == "field_open_failed"
    assert open_fields(schedule["data"], "nightly", KEYS) == data


def test_update_refuses_a_clear_value_it_cannot_seal() -> None:
    client, sent = _recording_client()
    with pytest.raises(ValueError, match="update cannot seal ssn"):
        client.update("j1", {"ssn": "078-05-1120"})
    assert sent == []
    check_sealed({"ssn": _sealed_ssn()["ssn"], "n": 1}, ["ssn", "card.token"])
    client.update("j1", {"ssn": _sealed_ssn()["ssn"]})
    assert len(sent) == 1


def test_the_async_client_seals_as_the_client_does() -> None:
    sent: list[Any] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(201, json={"id": "j", "queue": "q", "state": "waiting"})

    async def push() -> None:
        async with AsyncClient(
            "http://127.0.0.1:9",
            TOKEN,
            field_keys=KEYS,
            encrypt_fields=["ssn"],
            transport=httpx.MockTransport(answer),
        ) as client:
            await client.push("payments", {"ssn": "078-05-1120", "n": 1})
            with pytest.raises(ValueError, match="update cannot seal ssn"):
                await client.update("j1", {"ssn": "078-05-1120"})

    asyncio.run(push())
    assert len(sent) == 1 and "078-05-1120" not in json.dumps(sent)
    assert open_fields(sent[0]["data"], "payments", KEYS) == {"ssn": "078-05-1120", "n": 1}
