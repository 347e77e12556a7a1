"""deploy/compose.yaml: every service that runs the flashQ image is read-only, non-root,
without capabilities and on production settings; secrets are files under /run/secrets;
the owner's database URL reaches the migration only; nginx gets the shipped config."""

from __future__ import annotations

import re
from typing import Any

from deploy.policy.findings import Finding
from deploy.policy.rules import (
    OWNER_URL,
    SECRET_NAME,
    TMP,
    command_line,
    numeric_non_root,
    unpinned_image,
)

WHERE = "deploy/compose.yaml"
#: The services that run the flashQ image (hardened alike).
APP_SERVICES = ("app", "scheduler", "webhooks", "migrate")


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _secrets(service: dict[str, Any]) -> set[str]:
    return {s if isinstance(s, str) else s.get("source") for s in service.get("secrets", [])}


def _finding(rule: str, message: str) -> Finding:
    return Finding(f"compose.{rule}", WHERE, message)


def _service_env_findings(name: str, service: dict[str, Any], listed: set[str]) -> list[Finding]:
    """A service's secret variables name /run/secrets files it mounts; no inline passwords."""
    findings: list[Finding] = []
    for var, value in _environment(service).items():
        if re.search(r"://[^/@\s]*:[^/@\s]+@", value):
            findings.append(
                _finding("secret-files", f"service {name}: {var} holds a password inline")
            )
        if not SECRET_NAME.search(var):
            continue
        secret = value.removeprefix("/run/secrets/")
        if not var.endswith("_FILE") or not value.startswith("/run/secrets/"):
            findings.append(
                _finding(
                    "secret-files",
                    f"service {name}: {var} is a secret value, not a /run/secrets file",
                )
            )
        elif secret not in listed:
            findings.append(
                _finding("secret-files", f"service {name}: {var} points at {secret}, not mounted")
            )
    return findings


def _secret_findings(doc: dict[str, Any], services: dict[str, dict[str, Any]]) -> list[Finding]:
    """Secrets are files, mounted by compose under /run/secrets; images are pinned."""
    findings: list[Finding] = []
    top_secrets: dict[str, Any] = doc.get("secrets") or {}
    for name, spec in top_secrets.items():
        if not isinstance(spec, dict) or set(spec) != {"file"}:
            findings.append(
                _finding("secret-files", f"secret {name} must come from a file, and only from one")
            )
    for name, service in services.items():
        if "build" not in service:
            reason = unpinned_image(str(service.get("image", "")))
            if reason:
                findings.append(_finding("pinned-image", f"service {name}: {reason}"))
        listed = _secrets(service)
        for secret in listed - set(top_secrets):
            findings.append(
                _finding(
                    "secret-files", f"service {name} uses secret {secret}, which is not defined"
                )
            )
        findings += _service_env_findings(name, service, listed)
        if "env_file" in service:
            findings.append(
                _finding("secret-files", f"service {name}: no env_file (secrets belong in files)")
            )
    return findings


def _hardening_findings(services: dict[str, dict[str, Any]]) -> list[Finding]:
    findings: list[Finding] = []
    for name in APP_SERVICES:
        service = services.get(name, {})
        if service.get("read_only") is not True:
            findings.append(_finding("read-only", f"service {name} must have read_only: true"))
        tmpfs = service.get("tmpfs") or []
        tmpfs = [tmpfs] if isinstance(tmpfs, str) else tmpfs
        volumes = service.get("volumes") or []
        if not any(str(t).split(":")[0] == TMP for t in tmpfs) and not any(
            isinstance(v, dict) and v.get("type") == "tmpfs" and v.get("target") == TMP
            for v in volumes
        ):
            findings.append(_finding("tmpfs", f"service {name} needs a tmpfs at /tmp"))
        if not numeric_non_root(str(service.get("user", ""))):
            findings.append(
                _finding("non-root", f"service {name} must run as a numeric non-root user")
            )
        if "ALL" not in (service.get("cap_drop") or []):
            findings.append(_finding("capabilities", f"service {name} must drop every capability"))
        if not any("no-new-privileges" in str(o) for o in service.get("security_opt") or []):
            findings.append(
                _finding("no-new-privileges", f"service {name} must set no-new-privileges")
            )
        if (
            _environment(service).get("DJANGO_SETTINGS_MODULE")
            != "flashq_project.settings.production"
        ):
            findings.append(
                _finding("production-settings", f"service {name} must run with production settings")
            )
    return findings


def _wiring_findings(services: dict[str, dict[str, Any]]) -> list[Finding]:
    """What each service runs, in which order, and nginx's mounts."""
    findings: list[Finding] = []
    if "qcluster" not in command_line(services.get("scheduler", {}).get("command")):
        findings.append(_finding("commands", "the scheduler must run manage.py qcluster"))
    if "migrate --noinput" not in command_line(services.get("migrate", {}).get("command")):
        findings.append(
            _finding("commands", "the migrate service must run manage.py migrate --noinput")
        )
    depends = services.get("app", {}).get("depends_on") or {}
    if (
        not isinstance(depends, dict)
        or (depends.get("migrate") or {}).get("condition") != "service_completed_successfully"
    ):
        findings.append(
            _finding(
                "migration-first", "the app must wait for the migration to complete successfully"
            )
        )
    nginx = services.get("nginx", {})
    mounts = [str(v) for v in nginx.get("volumes") or []]
    if not any(
        m.split(":")[:2] == ["./nginx/flashq.conf", "/etc/nginx/conf.d/flashq.conf"] for m in mounts
    ):
        findings.append(
            _finding(
                "nginx",
                "nginx must mount deploy/nginx/flashq.conf at /etc/nginx/conf.d/flashq.conf",
            )
        )
    if not any(m.endswith(":ro") and "tls" in m for m in mounts):
        findings.append(_finding("nginx", "nginx must mount the TLS directory read-only"))
    return findings


def _database_role_findings(services: dict[str, dict[str, Any]]) -> list[Finding]:
    """The owner's URL reaches the migration only, which also grants the runtime role."""
    findings: list[Finding] = []
    for name in ("app", "scheduler", "webhooks"):
        service = services.get(name, {})
        if OWNER_URL in _secrets(service) or any(
            OWNER_URL in v for v in _environment(service).values()
        ):
            findings.append(
                _finding(
                    "database-role",
                    f"service {name} gets the owner's database URL ({OWNER_URL}): the app and "
                    "the scheduler must run as the runtime role",
                )
            )
    migrate = services.get("migrate", {})
    if _environment(migrate).get("DATABASE_URL_FILE") != f"/run/secrets/{OWNER_URL}":
        findings.append(
            _finding(
                "database-role",
                f"the migrate service must connect as the tables' owner ({OWNER_URL})",
            )
        )
    command = command_line(migrate.get("command"))
    if "manage.py grant_runtime_role" not in command.partition("migrate --noinput")[2]:
        findings.append(
            _finding(
                "database-role",
                "the migrate service must run manage.py grant_runtime_role after migrate",
            )
        )
    return findings


#: The services that may have a route out of the host: the app (for nginx's published
#: ports) and the webhook sender (to the receivers' URLs). Every other one is on
#: internal networks only.
ROUTED = {"app": "public", "webhooks": "egress"}


def _network_findings(doc: dict[str, Any], services: dict[str, dict[str, Any]]) -> list[Finding]:
    networks: dict[str, Any] = doc.get("networks") or {}
    internal = {name for name, spec in networks.items() if (spec or {}).get("internal")}
    findings: list[Finding] = []
    for name, service in services.items():
        if "network_mode" in service:
            continue  # nginx shares the app's namespace
        joined = set(service.get("networks") or ["default"])
        routed = joined - internal
        allowed = {ROUTED[name]} if name in ROUTED else set()
        if not routed <= allowed:
            findings.append(
                _finding(
                    "networks",
                    f"service {name} has a route out ({', '.join(sorted(routed))}); only the "
                    "app and the webhook sender may",
                )
            )
    return findings


def compose_findings(doc: dict[str, Any]) -> list[Finding]:
    """The parsed compose file, checked."""
    services: dict[str, dict[str, Any]] = doc.get("services") or {}
    findings = [
        _finding("services", f"service {name} is missing")
        for name in (*APP_SERVICES, "postgres", "nginx")
        if name not in services
    ]
    findings += _secret_findings(doc, services)
    findings += _hardening_findings(services)
    findings += _wiring_findings(services)
    findings += _database_role_findings(services)
    findings += _network_findings(doc, services)
    return findings
