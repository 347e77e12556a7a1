"""Every check, run on the deploy files of a repository checkout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from deploy.policy import k8s_schemas
from deploy.policy.compose import compose_findings
from deploy.policy.dockerfile import dockerfile_findings
from deploy.policy.dockerignore import dockerignore_findings, installed_apps
from deploy.policy.findings import Finding
from deploy.policy.k8s_database_role import database_role_findings
from deploy.policy.k8s_network import network_findings
from deploy.policy.k8s_workloads import workload_findings
from deploy.policy.manifests import load_manifests
from deploy.policy.nginx import nginx_access_log_findings

#: The checkout this package sits in: deploy/policy/ -> the repository's root.
ROOT = Path(__file__).resolve().parent.parent.parent
DOCKERFILE = Path("Dockerfile")
DOCKERIGNORE = Path(".dockerignore")
COMPOSE = Path("deploy") / "compose.yaml"
NGINX_CONF = Path("deploy") / "nginx" / "flashq.conf"


def load_compose(root: Path) -> dict[str, Any]:
    doc = yaml.safe_load((root / COMPOSE).read_text())
    if not isinstance(doc, dict):
        raise ValueError(f"{COMPOSE} is not a mapping")
    return doc


def check_repository(root: Path = ROOT, *, schemas: bool = True) -> list[Finding]:
    """Every finding on the deploy files under ``root``. With ``schemas`` (and
    kubernetes-validate installed) the manifests are validated against the schemas of
    each release in K8S_VERSIONS too."""
    findings = dockerfile_findings((root / DOCKERFILE).read_text())
    findings += dockerignore_findings((root / DOCKERIGNORE).read_text(), root, installed_apps(root))
    findings += compose_findings(load_compose(root))
    docs = load_manifests(root)
    findings += workload_findings(docs)
    findings += network_findings(docs)
    findings += database_role_findings(docs)
    if schemas:
        for version in k8s_schemas.K8S_VERSIONS:
            findings += k8s_schemas.schema_findings(docs, version)
    findings += nginx_access_log_findings((root / NGINX_CONF).read_text())
    return findings
