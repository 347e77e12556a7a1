"""deploy/k8s database roles: the app and the scheduler run as the runtime role (no
Deployment mounts the owner's Secret or names its URL); the migration Job connects as
the owner, in every container, and grants the runtime role after migrating; the example
Secrets show both URLs."""

from __future__ import annotations

from typing import Any

from deploy.policy.findings import Finding
from deploy.policy.manifests import K8S_DIR, containers, label, pod_spec, where
from deploy.policy.rules import OWNER_URL, command_line

RULE = "k8s.database-role"
#: The Secret holding OWNER_URL: mounted by the migration Job alone.
OWNER_SECRET = "flashq-db-owner"  # noqa: S105 (a Secret's name, not its value)


def _secret_names(volume: dict[str, Any]) -> set[str]:
    names = {(volume.get("secret") or {}).get("secretName")}
    names |= {
        (source.get("secret") or {}).get("name")
        for source in (volume.get("projected") or {}).get("sources") or []
    }
    return {name for name in names if name}


def _job_problems(at: str, spec: dict[str, Any], owner_volumes: set[str]) -> list[str]:
    problems: list[str] = []
    commands = [command_line(c.get("command")) for c in containers(spec)]
    migrating = [i for i, c in enumerate(commands) if "manage.py migrate --noinput" in c]
    if migrating and not any(
        "manage.py grant_runtime_role" in c for c in commands[migrating[0] + 1 :]
    ):
        problems.append(f"{at}: no container runs grant_runtime_role after migrate")
    for c in containers(spec):
        url: dict[str, Any] = next(
            (e for e in c.get("env") or [] if e["name"] == "DATABASE_URL_FILE"), {}
        )
        mounts = {m["mountPath"] for m in c.get("volumeMounts") or [] if m["name"] in owner_volumes}
        if not any(str(url.get("value")) == f"{m}/{OWNER_URL}" for m in mounts):
            problems.append(
                f"{at} container {c['name']}: DATABASE_URL_FILE must be the owner's "
                f"{OWNER_URL} from the {OWNER_SECRET} Secret"
            )
    return problems


def _gets_owner(spec: dict[str, Any], owner_volumes: set[str]) -> bool:
    """Whether a pod mounts the owner's Secret or reads it, or its URL, some other way."""
    gets_owner = bool(owner_volumes)
    for c in containers(spec):
        for env in c.get("env") or []:
            ref = (env.get("valueFrom") or {}).get("secretKeyRef") or {}
            gets_owner |= OWNER_URL in str(env.get("value", "")) or ref.get("name") == OWNER_SECRET
        gets_owner |= any(
            (source.get("secretRef") or {}).get("name") == OWNER_SECRET
            for source in c.get("envFrom") or []
        )
    return gets_owner


def database_role_findings(docs: list[dict[str, Any]]) -> list[Finding]:
    findings: list[Finding] = []
    for doc in docs:
        spec = pod_spec(doc)
        if spec is None:
            continue
        at = label(doc)
        owner_volumes = {
            v["name"] for v in spec.get("volumes") or [] if OWNER_SECRET in _secret_names(v)
        }
        if doc["kind"] == "Job":
            problems = _job_problems(at, spec, owner_volumes)
        elif _gets_owner(spec, owner_volumes):
            problems = [
                f"{at}: gets the owner's database URL ({OWNER_SECRET}): only the migration "
                "Job may; the app and the scheduler run as the runtime role"
            ]
        else:
            problems = []
        findings += [Finding(RULE, where(doc), problem) for problem in problems]
    examples = [d for d in docs if d.get("kind") == "Secret"]
    if not any(OWNER_URL in (d.get("stringData") or {}) for d in examples):
        findings.append(Finding(RULE, str(K8S_DIR), f"no example Secret shows {OWNER_URL}"))
    if not any("database_url" in (d.get("stringData") or {}) for d in examples):
        findings.append(
            Finding(RULE, str(K8S_DIR), "no example Secret shows database_url (the runtime role's)")
        )
    return findings
