"""The Kubernetes manifests keep their security settings, their network fence and their
database roles; a copy broken on purpose (in memory, never on disk) is caught."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from deploy.policy.findings import Finding
from deploy.policy.k8s_database_role import OWNER_SECRET, database_role_findings
from deploy.policy.k8s_network import network_findings
from deploy.policy.k8s_workloads import workload_findings
from deploy.policy.manifests import containers, load_manifests
from deploy.policy.repository import ROOT
from deploy.policy.rules import APP_PORT, OWNER_URL


def test_the_workloads_keep_their_security_settings() -> None:
    assert workload_findings(load_manifests(ROOT)) == []


def test_the_network_policies_keep_flashq_fenced_in() -> None:
    assert network_findings(load_manifests(ROOT)) == []


def test_only_the_migration_job_gets_the_owner_s_database_url() -> None:
    assert database_role_findings(load_manifests(ROOT)) == []


def _doc(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d.get("kind") == kind and d["metadata"]["name"] == name)


def _app_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = _doc(docs, "Deployment", "flashq-app")["spec"]["template"]["spec"][
        "containers"
    ][0]
    return container


def _scheduler_init(docs: list[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = _doc(docs, "Deployment", "flashq-scheduler")["spec"]["template"][
        "spec"
    ]["initContainers"][0]
    return container


def _ingress_rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = _doc(docs, "NetworkPolicy", "flashq-app-ingress")["spec"][
        "ingress"
    ]
    return rules


def _egress_rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = _doc(docs, "NetworkPolicy", "flashq-egress")["spec"]["egress"]
    return rules


def _webhook_blocks(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    policy = _doc(docs, "NetworkPolicy", "flashq-webhooks-egress")
    blocks: list[dict[str, Any]] = policy["spec"]["egress"][0]["to"]
    return blocks


def _env(container: dict[str, Any], name: str) -> dict[str, Any]:
    entry: dict[str, Any] = next(e for e in container["env"] if e["name"] == name)
    return entry


def _drop_seccomp(docs: list[dict[str, Any]]) -> None:
    """Neither the container nor its pod names a seccomp profile."""
    _app_container(docs)["securityContext"].pop("seccompProfile")
    pod = _doc(docs, "Deployment", "flashq-app")["spec"]["template"]["spec"]
    pod["securityContext"].pop("seccompProfile")


def _jobcontainers(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return list(containers(_doc(docs, "Job", "flashq-migrate")["spec"]["template"]["spec"]))


def _app_as_owner(docs: list[dict[str, Any]]) -> None:
    """The app mounts the owner's Secret and reads its URL, as the Job does."""
    pod = _doc(docs, "Deployment", "flashq-app")["spec"]["template"]["spec"]
    pod["volumes"].append({"name": "db-owner", "secret": {"secretName": OWNER_SECRET}})
    container = _app_container(docs)
    container["volumeMounts"].append(
        {"name": "db-owner", "mountPath": "/run/secrets/flashq-owner", "readOnly": True}
    )
    _env(container, "DATABASE_URL_FILE").update(value=f"/run/secrets/flashq-owner/{OWNER_URL}")


K8sEdit = Callable[[list[dict[str, Any]]], Any]
K8sCheck = Callable[[list[dict[str, Any]]], list[Finding]]
BROKEN_MANIFESTS: dict[str, tuple[K8sEdit, K8sCheck, str]] = {
    "root": (
        lambda d: _app_container(d)["securityContext"].update(runAsNonRoot=False),
        workload_findings,
        "runAsNonRoot",
    ),
    "uid 0": (
        lambda d: _app_container(d)["securityContext"].update(runAsUser=0),
        workload_findings,
        "runAsUser",
    ),
    "writable root": (
        lambda d: _scheduler_init(d)["securityContext"].update(readOnlyRootFilesystem=False),
        workload_findings,
        "readOnlyRootFilesystem",
    ),
    "escalation": (
        lambda d: _app_container(d)["securityContext"].pop("allowPrivilegeEscalation"),
        workload_findings,
        "allowPrivilegeEscalation",
    ),
    "capability kept": (
        lambda d: _app_container(d)["securityContext"]["capabilities"].update(add=["NET_ADMIN"]),
        workload_findings,
        "capabilities",
    ),
    "no seccomp": (_drop_seccomp, workload_findings, "seccompProfile"),
    "no memory limit": (
        lambda d: _app_container(d)["resources"]["limits"].pop("memory"),
        workload_findings,
        "resources.limits.memory",
    ),
    "latest image": (
        lambda d: _app_container(d).update(image="registry.example.com/flashq:latest"),
        workload_findings,
        "not pinned",
    ),
    "liveness on readyz": (
        lambda d: _app_container(d)["livenessProbe"]["httpGet"].update(path="/readyz"),
        workload_findings,
        "livenessProbe must GET /healthz",
    ),
    "no readiness": (
        lambda d: _app_container(d).pop("readinessProbe"),
        workload_findings,
        "readinessProbe must GET /readyz",
    ),
    "secret as a variable": (
        lambda d: _app_container(d)["env"].append(
            {
                "name": "SECRET_KEY",
                "valueFrom": {"secretKeyRef": {"name": "flashq-secrets", "key": "secret_key"}},
            }
        ),
        workload_findings,
        "comes from a Secret as a variable",
    ),
    "secret file outside the mount": (
        lambda d: _env(_app_container(d), "SECRET_KEY_FILE").update(value="/etc/secret_key"),
        workload_findings,
        "must be NAME_FILE naming a read-only Secret file",
    ),
    "real secret committed": (
        lambda d: _doc(d, "Secret", "flashq-secrets-example")["stringData"].update(
            secret_key="Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXhxdXV4cXV1eA"  # noqa: S106
        ),
        workload_findings,
        "not a PLACEHOLDER",
    ),
    "no migration job": (
        lambda d: d.remove(_doc(d, "Job", "flashq-migrate")),
        workload_findings,
        "no Job running manage.py migrate --noinput",
    ),
    "no /tmp": (
        lambda d: _app_container(d).update(
            volumeMounts=[m for m in _app_container(d)["volumeMounts"] if m["name"] != "tmp"]
        ),
        workload_findings,
        "must be an emptyDir",
    ),
    "api token mounted": (
        lambda d: _doc(d, "Job", "flashq-migrate")["spec"]["template"]["spec"].pop(
            "automountServiceAccountToken"
        ),
        workload_findings,
        "automountServiceAccountToken",
    ),
    "ingress to the scheduler": (
        lambda d: _doc(d, "NetworkPolicy", "flashq-app-ingress")["spec"].update(
            podSelector={"matchLabels": {"app.kubernetes.io/part-of": "flashq"}}
        ),
        network_findings,
        "pods other than the app",
    ),
    "the scheduler's metrics open to the workers": (
        lambda d: _doc(d, "NetworkPolicy", "flashq-scheduler-metrics")["spec"]["ingress"][0][
            "from"
        ][0]["namespaceSelector"].update(matchLabels={"flashq.io/workers": "true"}),
        network_findings,
        "into the scheduler only monitoring",
    ),
    "the scheduler's API port opened": (
        lambda d: _doc(d, "NetworkPolicy", "flashq-scheduler-metrics")["spec"]["ingress"][0][
            "ports"
        ][0].update(port=8000),
        network_findings,
        "into the scheduler only monitoring",
    ),
    "no default deny": (
        lambda d: d.remove(_doc(d, "NetworkPolicy", "default-deny-all")),
        network_findings,
        "no default-deny",
    ),
    "ingress from any namespace": (
        lambda d: _ingress_rules(d)[1]["from"][0].update(namespaceSelector={}),
        network_findings,
        "ingress only from a namespace",
    ),
    "ingress from another namespace": (
        lambda d: _ingress_rules(d)[1]["from"][0]["namespaceSelector"].update(
            matchLabels={"kubernetes.io/metadata.name": "default"}
        ),
        network_findings,
        "unexpected namespace",
    ),
    "ingress from everywhere": (
        lambda d: _ingress_rules(d).append({}),
        network_findings,
        "without `from` admits everyone",
    ),
    "ingress from a CIDR": (
        lambda d: _ingress_rules(d)[0]["from"].append({"ipBlock": {"cidr": "0.0.0.0/0"}}),
        network_findings,
        "ingress only from a namespace",
    ),
    "ingress on another port": (
        lambda d: _ingress_rules(d)[2]["ports"].append({"protocol": "TCP", "port": 9090}),
        network_findings,
        f"TCP {APP_PORT} only",
    ),
    "monitoring left out": (
        lambda d: _ingress_rules(d).pop(2),
        network_findings,
        "reachable from exactly",
    ),
    "egress to the web": (
        lambda d: _egress_rules(d).append(
            {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 443}]}
        ),
        network_findings,
        "egress only to 5432 and 53",
    ),
    "egress on any port": (
        lambda d: _egress_rules(d)[0].pop("ports"),
        network_findings,
        "any port",
    ),
    "egress anywhere": (
        lambda d: _egress_rules(d)[0].pop("to"),
        network_findings,
        "without `to` reaches everywhere",
    ),
    "dns anywhere": (
        lambda d: _egress_rules(d)[1]["to"][0].pop("namespaceSelector"),
        network_findings,
        "DNS only to kube-system",
    ),
    "webhook egress to the metadata address": (
        lambda d: _webhook_blocks(d)[0]["ipBlock"]["except"].remove("169.254.0.0/16"),
        network_findings,
        "webhook egress must leave out 169.254.0.0/16",
    ),
    "webhook egress to private IPv6": (
        lambda d: _webhook_blocks(d)[1]["ipBlock"].pop("except"),
        network_findings,
        "webhook egress must leave out",
    ),
    "webhook egress on port 22": (
        lambda d: _doc(d, "NetworkPolicy", "flashq-webhooks-egress")["spec"]["egress"][0][
            "ports"
        ].append({"protocol": "TCP", "port": 22}),
        network_findings,
        "TCP 443 and 1024-65535 only",
    ),
    "the app as the owner": (_app_as_owner, database_role_findings, "Deployment/flashq-app: gets"),
    "the owner's Secret mounted in the scheduler": (
        lambda d: _doc(d, "Deployment", "flashq-scheduler")["spec"]["template"]["spec"][
            "volumes"
        ].append({"name": "db", "secret": {"secretName": OWNER_SECRET}}),
        database_role_findings,
        "Deployment/flashq-scheduler: gets the owner's",
    ),
    "the owner's URL as a variable": (
        lambda d: _app_container(d)["env"].append(
            {
                "name": "DATABASE_URL",
                "valueFrom": {"secretKeyRef": {"name": OWNER_SECRET, "key": OWNER_URL}},
            }
        ),
        database_role_findings,
        "Deployment/flashq-app: gets",
    ),
    "the migration as the runtime role": (
        lambda d: _env(_jobcontainers(d)[0], "DATABASE_URL_FILE").update(
            value="/run/secrets/flashq/database_url"
        ),
        database_role_findings,
        "container migrate: DATABASE_URL_FILE must be the owner's",
    ),
    "no grants for the runtime role": (
        lambda d: _doc(d, "Job", "flashq-migrate")["spec"]["template"]["spec"][
            "initContainers"
        ].pop(1),
        database_role_findings,
        "no container runs grant_runtime_role after migrate",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_MANIFESTS))
def test_a_broken_manifest_is_caught(case: str) -> None:
    edit, check, expected = BROKEN_MANIFESTS[case]
    docs = load_manifests(ROOT)
    edit(docs)
    problems = [str(finding) for finding in check(docs)]
    assert any(expected in problem for problem in problems), problems
