"""deploy/nginx/flashq.conf's access logs write no raw request, and a copy broken on
purpose is caught."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from deploy.policy.nginx import nginx_access_log_findings, nginx_blocks
from deploy.policy.repository import NGINX_CONF, ROOT


def _conf() -> str:
    return (ROOT / NGINX_CONF).read_text()


def test_the_nginx_access_logs_write_no_raw_request() -> None:
    conf = _conf()
    assert len(nginx_blocks(conf, "server")) == 2  # the check sees both servers
    assert nginx_access_log_findings(conf) == []


def _first(old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert old in text, f"{old!r} is not in {NGINX_CONF.name}: update this test"
        return text.replace(old, new, 1)

    return edit


BROKEN_NGINX: dict[str, tuple[Callable[[str], str], str]] = {
    "the request line": (_first("$request_method $flashq_log_path ", "$request "), "$request,"),
    "the raw path": (
        _first("$request_method $flashq_log_path ", "$request_method $request_uri "),
        "$request_uri",
    ),
    "the path without the map": (
        _first("$request_method $flashq_log_path ", "$request_method $uri "),
        "$uri,",
    ),
    "a referer": (
        _first('"$upstream_http_x_request_id"', '"$upstream_http_x_request_id" "$http_referer"'),
        "$http_referer",
    ),
    "the default format": (
        _first("access_log /var/log/nginx/access.log flashq;", "access_log /var/log/nginx/a.log;"),
        "default format",
    ),
    "a server inheriting the default": (
        _first("access_log /var/log/nginx/access.log flashq;", ""),
        "server block 1 sets no access_log",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_NGINX))
def test_a_broken_nginx_access_log_is_caught(case: str) -> None:
    edit, expected = BROKEN_NGINX[case]
    problems = [str(finding) for finding in nginx_access_log_findings(edit(_conf()))]
    assert any(expected in problem for problem in problems), problems
