"""deploy/k8s workloads: every container non-root, read-only, without privileges or
capabilities, with seccomp, requests and limits, a pinned image, an emptyDir /tmp and
secrets as files; the app probed on /healthz and /readyz; committed Secrets examples."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deploy.policy.findings import Finding
from deploy.policy.manifests import K8S_DIR, NAMESPACE, containers, label, pod_spec, selects, where
from deploy.policy.rules import APP_PORT, SECRET_NAME, TMP, command_line, unpinned_image

K8S = str(K8S_DIR)


def _effective(container_sc: dict[str, Any], pod_sc: dict[str, Any]) -> Callable[[str], Any]:
    """A security setting as the container gets it: its own, else its pod's."""
    return lambda key: container_sc.get(key, pod_sc.get(key))


def _context_findings(at: str, sc: dict[str, Any], pod_sc: dict[str, Any]) -> list[tuple[str, str]]:
    """The container's security context (its own settings, else its pod's)."""
    found: list[tuple[str, str]] = []
    setting = _effective(sc, pod_sc)
    if setting("runAsNonRoot") is not True:
        found.append(("non-root", f"{at}: runAsNonRoot must be true"))
    if setting("runAsUser") in (None, 0):
        found.append(("non-root", f"{at}: runAsUser must be set, and not 0"))
    if sc.get("readOnlyRootFilesystem") is not True:
        found.append(("read-only", f"{at}: readOnlyRootFilesystem must be true"))
    if sc.get("allowPrivilegeEscalation") is not False:
        found.append(("privileges", f"{at}: allowPrivilegeEscalation must be false"))
    if sc.get("privileged"):
        found.append(("privileges", f"{at}: privileged"))
    capabilities = sc.get("capabilities") or {}
    if capabilities.get("drop") != ["ALL"] or capabilities.get("add"):
        found.append(("capabilities", f"{at}: capabilities must drop ALL and add none"))
    if (setting("seccompProfile") or {}).get("type") != "RuntimeDefault":
        found.append(("seccomp", f"{at}: seccompProfile must be RuntimeDefault"))
    return found


def _resource_findings(at: str, c: dict[str, Any]) -> list[tuple[str, str]]:
    """Requests and limits for cpu and memory; a pinned image."""
    found: list[tuple[str, str]] = []
    resources = c.get("resources") or {}
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if resource not in (resources.get(kind) or {}):
                found.append(("resources", f"{at}: resources.{kind}.{resource} is not set"))
    reason = unpinned_image(str(c.get("image", "")))
    if reason:
        found.append(("pinned-image", f"{at}: {reason}"))
    return found


def _secret_env_findings(
    at: str, c: dict[str, Any], secret_dirs: list[str]
) -> list[tuple[str, str]]:
    """Secrets reach the container as read-only files, never as variables."""
    found: list[tuple[str, str]] = []
    for env in c.get("env") or []:
        name = env["name"]
        if "secretKeyRef" in (env.get("valueFrom") or {}):
            found.append(
                ("secret-files", f"{at}: {name} comes from a Secret as a variable, not a file")
            )
        if SECRET_NAME.search(name) and not (
            name.endswith("_FILE")
            and any(str(env.get("value", "")).startswith(d + "/") for d in secret_dirs)
        ):
            found.append(
                ("secret-files", f"{at}: {name} must be NAME_FILE naming a read-only Secret file")
            )
    for source in c.get("envFrom") or []:
        if "secretRef" in source:
            found.append(
                ("secret-files", f"{at}: envFrom a Secret puts secrets in the environment")
            )
    return found


def _container_findings(
    at: str, c: dict[str, Any], pod_sc: dict[str, Any], volumes: dict[str, Any]
) -> list[tuple[str, str]]:
    """(rule, message) for one container; ``at`` names it in the messages."""
    found = _context_findings(at, c.get("securityContext") or {}, pod_sc)
    found += _resource_findings(at, c)
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts") or []}
    tmp = mounts.get(TMP)
    if tmp is None or "emptyDir" not in volumes.get(tmp["name"], {}):
        found.append(("tmp", f"{at}: /tmp must be an emptyDir (the root filesystem is read-only)"))
    secret_dirs = [
        path
        for path, m in mounts.items()
        if "secret" in volumes.get(m["name"], {}) and m.get("readOnly") is True
    ]
    return found + _secret_env_findings(at, c, secret_dirs)


def pod_findings(doc: dict[str, Any]) -> list[Finding]:
    """Every container of a workload (none for other kinds)."""
    spec = pod_spec(doc)
    if spec is None:
        return []
    name = label(doc)
    found: list[tuple[str, str]] = []
    pod_sc = spec.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            found.append(("host-namespaces", f"{name}: {flag}"))
    if spec.get("automountServiceAccountToken") is not False:
        found.append(("api-token", f"{name}: automountServiceAccountToken must be false"))
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    for c in containers(spec):
        found += _container_findings(f"{name} container {c['name']}", c, pod_sc, volumes)
    return [Finding(f"k8s.{rule}", where(doc), message) for rule, message in found]


def _document_findings(doc: dict[str, Any]) -> list[Finding]:
    """Namespaced, no secret in a ConfigMap, only placeholder Secrets."""
    found: list[tuple[str, str]] = []
    name = label(doc)
    if doc.get("kind") != "Namespace" and doc.get("metadata", {}).get("namespace") != NAMESPACE:
        found.append(("namespace", f"{name}: not in namespace {NAMESPACE}"))
    if doc.get("kind") == "ConfigMap":
        found += [
            ("secret-files", f"{name}: {key} looks like a secret; secrets go in the Secret")
            for key in doc.get("data") or {}
            if SECRET_NAME.search(key)
        ]
    if doc.get("kind") == "Secret":
        if not doc["metadata"]["name"].endswith("-example"):
            found.append(("example-secrets", f"{name}: only an example Secret may be committed"))
        for key, value in (doc.get("stringData") or {}).items():
            if value != "PLACEHOLDER":
                found.append(("example-secrets", f"{name}: {key} is not a PLACEHOLDER"))
        if doc.get("data"):
            found.append(("example-secrets", f"{name}: base64 data in a committed Secret"))
    return [Finding(f"k8s.{rule}", where(doc), message) for rule, message in found]


def _http_probe(container: dict[str, Any], kind: str) -> str | None:
    probe = container.get(kind) or {}
    path = (probe.get("httpGet") or {}).get("path")
    return str(path) if path is not None else None


def _app_findings(docs: list[dict[str, Any]]) -> list[Finding]:
    """The app serves its port, probed on /healthz and /readyz, behind a Service."""
    app = next(
        (
            d
            for d in docs
            if d.get("kind") == "Deployment" and d["metadata"]["name"] == "flashq-app"
        ),
        None,
    )
    if app is None:
        return [Finding("k8s.app", K8S, "no Deployment flashq-app")]
    findings: list[Finding] = []
    serving = [
        c
        for c in app["spec"]["template"]["spec"]["containers"]
        if any(p.get("containerPort") == APP_PORT for p in c.get("ports") or [])
    ]
    if not serving:
        findings.append(
            Finding("k8s.app", where(app), f"flashq-app: no container serves port {APP_PORT}")
        )
    for c in serving:
        if _http_probe(c, "livenessProbe") != "/healthz":
            findings.append(
                Finding(
                    "k8s.probes",
                    where(app),
                    f"flashq-app {c['name']}: livenessProbe must GET /healthz",
                )
            )
        if _http_probe(c, "readinessProbe") != "/readyz":
            findings.append(
                Finding(
                    "k8s.probes",
                    where(app),
                    f"flashq-app {c['name']}: readinessProbe must GET /readyz",
                )
            )
    labels = app["spec"]["template"]["metadata"]["labels"]
    if not any(
        d.get("kind") == "Service" and selects({"matchLabels": d["spec"]["selector"]}, labels)
        for d in docs
    ):
        findings.append(Finding("k8s.app", where(app), "no Service selects the app's pods"))
    return findings


def workload_findings(docs: list[dict[str, Any]]) -> list[Finding]:
    """Every document, then the app, the scheduler and the migration Job being there."""
    findings: list[Finding] = []
    for doc in docs:
        findings += _document_findings(doc)
        findings += pod_findings(doc)
    findings += _app_findings(docs)
    scheduler = next(
        (
            d
            for d in docs
            if d.get("kind") == "Deployment" and d["metadata"]["name"] == "flashq-scheduler"
        ),
        None,
    )
    commands = (
        [command_line(c.get("command")) for c in containers(scheduler["spec"]["template"]["spec"])]
        if scheduler
        else []
    )
    if not any("manage.py qcluster" in command for command in commands):
        findings.append(
            Finding(
                "k8s.scheduler", K8S, "no Deployment flashq-scheduler running manage.py qcluster"
            )
        )
    if not any(
        "manage.py migrate --noinput" in command_line(c.get("command"))
        for job in docs
        if job.get("kind") == "Job"
        for c in containers(job["spec"]["template"]["spec"])
    ):
        findings.append(Finding("k8s.migration", K8S, "no Job running manage.py migrate --noinput"))
    return findings
