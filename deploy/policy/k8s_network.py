"""deploy/k8s NetworkPolicies: a default deny; into flashQ only the app, on its port,
from the named namespaces (and the scheduler's counters from monitoring); out only to
PostgreSQL (5432) and DNS (53, in kube-system); and the webhook sender alone out to
public addresses on the webhook ports."""

from __future__ import annotations

from typing import Any

from deploy.policy.findings import Finding
from deploy.policy.manifests import K8S_DIR, label, selects, where
from deploy.policy.rules import APP_PORT, SCHEDULER_METRICS_PORT

#: The only namespaces that may reach the app (10-networkpolicies.yaml).
ALLOWED_SOURCES = {
    ("kubernetes.io/metadata.name", "ingress-nginx"),
    ("flashq.io/workers", "true"),
    ("kubernetes.io/metadata.name", "monitoring"),
}
#: The only destinations flashQ's pods may open connections to: PostgreSQL and DNS.
ALLOWED_EGRESS_PORTS = {("TCP", 5432), ("UDP", 53), ("TCP", 53)}
Port = tuple[str, Any]


def _ports(rule: dict[str, Any]) -> set[Port]:
    return {(p.get("protocol", "TCP"), p.get("port")) for p in rule.get("ports") or []}


def _component(labels: dict[str, str]) -> str | None:
    return labels.get("app.kubernetes.io/component")


def _scheduler_ingress(at: str, spec: dict[str, Any]) -> list[str]:
    """The scheduler's counters: from monitoring, on its metrics port, only."""
    problems: list[str] = []
    for rule in spec["ingress"]:
        peers = [p.get("namespaceSelector", {}).get("matchLabels") for p in rule.get("from") or []]
        if peers != [{"kubernetes.io/metadata.name": "monitoring"}] or _ports(rule) != {
            ("TCP", SCHEDULER_METRICS_PORT)
        }:
            problems.append(
                f"{at}: into the scheduler only monitoring, on {SCHEDULER_METRICS_PORT}"
            )
    return problems


def _app_ingress(at: str, spec: dict[str, Any], sources: set[tuple[str, str]]) -> list[str]:
    """Into the app: from one namespace label each, on the app's port only. Adds the
    namespaces it admits to ``sources``."""
    problems: list[str] = []
    for rule in spec.get("ingress") or []:
        peers = rule.get("from") or []
        if not peers:
            problems.append(f"{at}: an ingress rule without `from` admits everyone")
        for peer in peers:
            labels = (peer.get("namespaceSelector") or {}).get("matchLabels") or {}
            if set(peer) != {"namespaceSelector"} or len(labels) != 1:
                problems.append(f"{at}: ingress only from a namespace, by one label: {peer}")
                continue
            source = next(iter(labels.items()))
            if source not in ALLOWED_SOURCES:
                problems.append(f"{at}: ingress from an unexpected namespace {source}")
            sources.add(source)
        ports = _ports(rule)
        if ports != {("TCP", APP_PORT)}:
            problems.append(f"{at}: ingress must be to TCP {APP_PORT} only, not {ports}")
    return problems


def _egress(at: str, spec: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for rule in spec.get("egress") or []:
        peers = rule.get("to") or []
        ports = _ports(rule)
        if not peers:
            problems.append(f"{at}: an egress rule without `to` reaches everywhere")
        if not ports or not ports <= ALLOWED_EGRESS_PORTS:
            problems.append(f"{at}: egress only to 5432 and 53, not {ports or 'any port'}")
        for peer in peers:
            cidr = (peer.get("ipBlock") or {}).get("cidr", "")
            if cidr.endswith("/0"):
                problems.append(f"{at}: egress to {cidr}")
            if ports & {("UDP", 53), ("TCP", 53)}:
                ns = (peer.get("namespaceSelector") or {}).get("matchLabels") or {}
                if ns.get("kubernetes.io/metadata.name") != "kube-system":
                    problems.append(f"{at}: DNS only to kube-system, not {peer}")
    return problems


#: What the webhook sender's way out must leave out of its ``/0`` blocks.
WEBHOOK_EXCEPTED = {
    "0.0.0.0/0": {
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
    },
    "::/0": {"::1/128", "::ffff:0:0/96", "fc00::/7", "fe80::/10"},
}
#: The ports a webhook URL may name (kernel.safehttp): 443 and 1024 up.
WEBHOOK_PORTS = [
    {"protocol": "TCP", "port": 443},
    {"protocol": "TCP", "port": 1024, "endPort": 65535},
]


def _webhooks_egress(at: str, spec: dict[str, Any]) -> list[str]:
    """The webhook sender's way out: public addresses only, on the webhook ports."""
    problems: list[str] = []
    for rule in spec.get("egress") or []:
        peers = rule.get("to") or []
        if not peers:
            problems.append(f"{at}: an egress rule without `to` reaches everywhere")
        if sorted(rule.get("ports") or [], key=str) != sorted(WEBHOOK_PORTS, key=str):
            problems.append(f"{at}: the webhook sender's egress is TCP 443 and 1024-65535 only")
        for peer in peers:
            block = peer.get("ipBlock") or {}
            needed = WEBHOOK_EXCEPTED.get(block.get("cidr", ""))
            if set(peer) != {"ipBlock"} or needed is None:
                problems.append(f"{at}: webhook egress only to 0.0.0.0/0 and ::/0 blocks: {peer}")
            elif not needed <= set(block.get("except") or []):
                missing = ", ".join(sorted(needed - set(block.get("except") or [])))
                problems.append(f"{at}: webhook egress must leave out {missing}")
    return problems


def network_findings(docs: list[dict[str, Any]]) -> list[Finding]:
    """The NetworkPolicies among ``docs``, checked against the pods they select."""
    k8s = str(K8S_DIR)
    findings: list[Finding] = []
    policies = [d for d in docs if d.get("kind") == "NetworkPolicy"]
    workloads = [d for d in docs if d.get("kind") in ("Deployment", "Job")]

    def labels_of(doc: dict[str, Any]) -> dict[str, str]:
        pod_labels: dict[str, str] = doc["spec"]["template"]["metadata"]["labels"]
        return pod_labels

    if not any(
        p["spec"].get("podSelector") == {}
        and set(p["spec"].get("policyTypes") or []) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
        for p in policies
    ):
        findings.append(
            Finding(
                "k8s.network-default-deny",
                k8s,
                "no default-deny NetworkPolicy (podSelector {}, Ingress and Egress)",
            )
        )
    sources: set[tuple[str, str]] = set()
    for policy in policies:
        spec, at = policy["spec"], label(policy)
        selected = [labels_of(w) for w in workloads if selects(spec["podSelector"], labels_of(w))]
        components = {_component(labels) for labels in selected}
        ingress: list[str] = []
        if spec.get("ingress") and components == {"scheduler"}:
            ingress = _scheduler_ingress(at, spec)
        else:
            if spec.get("ingress") and any(_component(labels) != "app" for labels in selected):
                ingress.append(f"{at}: lets traffic into pods other than the app")
            ingress += _app_ingress(at, spec, sources)
        findings += [Finding("k8s.network-ingress", where(policy), m) for m in ingress]
        if components == {"webhooks"} and spec.get("egress"):
            findings += [
                Finding("k8s.network-egress", where(policy), m) for m in _webhooks_egress(at, spec)
            ]
        elif components != {"scheduler"} or not spec.get("ingress"):
            findings += [Finding("k8s.network-egress", where(policy), m) for m in _egress(at, spec)]
    if sources != ALLOWED_SOURCES:
        findings.append(
            Finding(
                "k8s.network-ingress",
                k8s,
                f"the app should be reachable from exactly {sorted(ALLOWED_SOURCES)}",
            )
        )
    for workload in workloads:
        egress_ports = {
            port
            for policy in policies
            if selects(policy["spec"]["podSelector"], labels_of(workload))
            for rule in policy["spec"].get("egress") or []
            for port in _ports(rule)
        }
        if ("TCP", 5432) not in egress_ports or ("UDP", 53) not in egress_ports:
            findings.append(
                Finding(
                    "k8s.network-egress",
                    where(workload),
                    f"{label(workload)}: no egress policy lets it reach PostgreSQL and DNS",
                )
            )
    return findings
