"""JSON values for property tests, and a comparison that keeps their types."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


def json_values(*, lone_surrogates: bool) -> st.SearchStrategy[Any]:
    """Any JSON value but NaN and the infinities, integers past 64 bits included; its
    strings hold lone surrogates only if asked (they cannot be stored)."""
    text = st.text() if lone_surrogates else st.text(st.characters(exclude_categories=["Cs"]))
    return st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | text,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
        max_leaves=12,
    )


def typed(value: Any) -> Any:
    """``value`` with its types, so 1, 1.0 and True never compare equal."""
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    return (type(value).__name__, value)
