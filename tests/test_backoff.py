from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from queues.backoff import retry_delay_ms


def test_fixed_backoff_is_the_same_every_attempt() -> None:
    backoff = {"type": "fixed", "delay": 500, "max": 10_000, "jitter": 0}
    assert [retry_delay_ms(backoff, n) for n in (1, 2, 5)] == [500, 500, 500]


def test_exponential_backoff_doubles_up_to_the_cap() -> None:
    backoff = {"type": "exponential", "delay": 1000, "max": 10_000, "jitter": 0}
    assert [retry_delay_ms(backoff, n) for n in range(1, 7)] == [
        1000,
        2000,
        4000,
        8000,
        10_000,
        10_000,
    ]


@pytest.mark.parametrize(("rand", "expected"), [(0.0, 4000), (0.5, 3600), (1.0, 3200)])
def test_jitter_shortens_by_at_most_its_fraction(rand: float, expected: int) -> None:
    backoff = {"type": "exponential", "delay": 1000, "max": 60_000, "jitter": 0.2}
    assert retry_delay_ms(backoff, 3, rand=lambda: rand) == expected


@given(
    kind=st.sampled_from(["fixed", "exponential"]),
    delay=st.integers(0, 86_400_000),
    cap=st.integers(0, 604_800_000),
    jitter=st.floats(0, 1),
    attempt=st.integers(1, 10_000),
    rand=st.floats(0, 1, exclude_max=True),
)
def test_a_delay_never_exceeds_the_cap_nor_goes_negative(
    kind: str, delay: int, cap: int, jitter: float, attempt: int, rand: float
) -> None:
    backoff = {"type": kind, "delay": delay, "max": cap, "jitter": jitter}
    assert (
        0
        <= retry_delay_ms(backoff, attempt, rand=lambda: rand)
        <= min(cap, delay * 2 ** min(attempt - 1, 62))
    )
