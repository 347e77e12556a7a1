from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from security.access import InvalidRule, Principal, Rule, Verb, pattern_matches

queue_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,20}", fullmatch=True)


def principal(*rules: Rule) -> Principal:
    return Principal(name="p", rules=rules, token_id=1)


@pytest.mark.parametrize(
    ("pattern", "queue", "matches"),
    [
        ("jobs:*", "jobs:email", True),
        ("jobs:*", "jobs:", True),
        ("jobs:*", "xjobs:email", False),  # anchored at the start
        ("jobs", "jobs:email", False),  # anchored at the end
        ("Jobs:*", "jobs:email", False),  # case-sensitive
        ("*:email", "jobs:email", True),
        ("a.c", "abc", False),  # . is literal, not a regex wildcard
        ("*", "anything", True),
        ("j*s:*l", "jobs:email", True),
    ],
)
def test_patterns(pattern: str, queue: str, matches: bool) -> None:
    assert pattern_matches(pattern, queue) is matches


@given(queue_names)
def test_a_pattern_without_a_star_matches_only_itself(name: str) -> None:
    assert pattern_matches(name, name)
    assert not pattern_matches(name, name + "x")
    assert not pattern_matches(name, "x" + name)


def test_default_deny() -> None:
    assert not principal().allows(Verb.PUSH, "jobs:a")
    assert not principal(Rule.build("jobs:*", ["push"], allow=True)).allows(Verb.PULL, "jobs:a")


def test_deny_beats_allow_whatever_the_order() -> None:
    allow = Rule.build("*", ["*"], allow=True)
    deny = Rule.build("jobs:secret", ["pull"], allow=False)
    for rules in ((allow, deny), (deny, allow)):
        who = principal(*rules)
        assert not who.allows(Verb.PULL, "jobs:secret")
        assert who.allows(Verb.PUSH, "jobs:secret")
        assert who.allows(Verb.PULL, "jobs:public")


def test_star_verb_never_grants_admin_reveal_erase_or_metrics() -> None:
    who = principal(Rule.build("*", ["*"], allow=True))
    named = (Verb.ADMIN, Verb.REVEAL, Verb.ERASE, Verb.METRICS)
    assert all(who.allows(verb, "q") for verb in Verb if verb not in named)
    assert not who.allows(Verb.ADMIN, "q")
    assert not who.allows(Verb.REVEAL, "q")
    assert not who.allows(Verb.ERASE, "q")
    assert not who.allows(Verb.METRICS, "*")
    assert principal(Rule.build("*", ["*", "admin"], allow=True)).allows(Verb.ADMIN, "q")
    assert not principal(Rule.build("*", ["*", "admin"], allow=True)).allows(Verb.ERASE, "q")
    assert principal(Rule.build("*", ["*", "erase"], allow=True)).allows(Verb.ERASE, "q")


def test_a_star_deny_denies_named_verbs_too() -> None:
    who = principal(
        Rule.build("*", ["*", "admin", "erase"], allow=True),
        Rule.build("locked", ["*"], allow=False),
    )
    assert not who.allows(Verb.ADMIN, "locked")
    assert not who.allows(Verb.ERASE, "locked")
    assert who.allows(Verb.ERASE, "open")


@pytest.mark.parametrize(
    ("pattern", "verbs"), [("jobs:*", ["fly"]), ("jobs/x", ["push"]), ("", ["push"]), ("q", [])]
)
def test_invalid_rules_are_refused(pattern: str, verbs: list[str]) -> None:
    with pytest.raises(InvalidRule):
        Rule.build(pattern, verbs, allow=True)


def test_a_token_sees_a_queue_when_it_has_any_verb_there() -> None:
    who = principal(Rule.build("jobs:*", ["getJob"], allow=True))
    assert who.sees("jobs:a")
    assert not who.sees("other")


@given(st.from_regex(r"[ab*]{0,12}", fullmatch=True), st.from_regex(r"[ab]{0,12}", fullmatch=True))
def test_matching_agrees_with_fnmatch(pattern: str, queue: str) -> None:
    assert pattern_matches(pattern, queue) is fnmatch.fnmatchcase(queue, pattern)


def test_a_pathological_pattern_is_matched_in_linear_steps() -> None:
    # A backtracking regex takes exponential time here; the two-pointer match does not.
    pattern = "*a" * 60 + "*b"
    assert not pattern_matches(pattern, "a" * 128)
