"""deploy/nginx/flashq.conf's access logs: no format writes what the client sent as it
sent it, and every server block names one of those formats."""

from __future__ import annotations

import re

from deploy.policy.findings import Finding

WHERE = "deploy/nginx/flashq.conf"
RULE = "nginx.access-log"
#: nginx variables that hold what the client sent as it sent it: the request line, the
#: path and query, headers, cookies, a Basic user name, the body. An access log format
#: writes the path only through a map that redacts card numbers (tests/test_tls_proxy.py
#: runs it).
RAW_REQUEST_VARIABLE = re.compile(
    r"\$(request|request_uri|uri|document_uri|args|query_string|request_body|remote_user"
    r"|http_\w+|arg_\w+|cookie_\w+)\b"
)


def _directives(text: str) -> str:
    return re.sub(r"(^|\s)#.*$", "", text, flags=re.MULTILINE)


def nginx_blocks(text: str, name: str) -> list[str]:
    """The bodies of the top-level ``name { ... }`` blocks (comments dropped and quoted
    strings blanked, so the braces of a regex do not count)."""
    conf = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', _directives(text))
    bodies, depth, start = [], 0, -1
    for match in re.finditer(r"[{}]", conf):
        if match.group() == "{":
            if depth == 0 and re.search(rf"(^|\s){name}\s*$", conf[: match.start()]):
                start = match.end()
            depth += 1
        else:
            depth -= 1
            if depth == 0 and start >= 0:
                bodies.append(conf[start : match.start()])
                start = -1
    return bodies


def nginx_access_log_findings(text: str) -> list[Finding]:
    """The config's text, checked."""
    conf = _directives(text)
    formats = dict(re.findall(r"^\s*log_format\s+(\S+)\s+([^;]*);", conf, flags=re.MULTILINE))
    problems = [
        f"log_format {name} writes ${variable}, which holds the request as the client sent it"
        for name, line in formats.items()
        for variable in RAW_REQUEST_VARIABLE.findall(line)
    ]
    for directive in re.findall(r"^\s*access_log\s+([^;]+);", conf, flags=re.MULTILINE):
        words = directive.split()
        if words != ["off"] and (len(words) < 2 or words[1] not in formats):
            problems.append(
                f"access_log {directive} writes nginx's default format (the whole request line)"
            )
    for number, body in enumerate(nginx_blocks(text, "server"), start=1):
        while re.search(r"\{[^{}]*\}", body):
            body = re.sub(r"\{[^{}]*\}", "", body)  # its locations
        if not re.search(r"^\s*access_log\s", body, flags=re.MULTILINE):
            problems.append(
                f"server block {number} sets no access_log: it inherits the distribution's,"
                " which writes the whole request line"
            )
    return [Finding(RULE, WHERE, problem) for problem in problems]
