"""Every manifest validates against the Kubernetes schemas (strict: an unknown field is
an error), and the validator does refuse a misspelt field and an unknown kind. Skipped,
saying why, where kubernetes-validate is not installed (it is in requirements-dev.txt)."""

from __future__ import annotations

import copy

import pytest

from deploy.policy.k8s_schemas import K8S_VERSIONS, available, schema_findings
from deploy.policy.manifests import load_manifests
from deploy.policy.repository import ROOT

pytestmark = pytest.mark.skipif(
    not available(),
    reason="kubernetes-validate is not installed (pip install -r requirements-dev.txt)",
)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schemas(version: str) -> None:
    docs = load_manifests(ROOT)
    assert docs, "no manifests under deploy/k8s"
    assert [str(f) for f in schema_findings(docs, version)] == []


def test_the_validator_refuses_a_misspelt_field_and_an_unknown_kind() -> None:
    app = next(d for d in load_manifests(ROOT) if d["metadata"]["name"] == "flashq-app")
    misspelt = copy.deepcopy(app)
    container = misspelt["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["readOnlyRootFilesytem"] = True
    [finding] = schema_findings([misspelt], K8S_VERSIONS[0])
    assert finding.rule == "k8s.schema"
    assert "readOnlyRootFilesytem" in finding.message, finding
    [finding] = schema_findings([{**app, "kind": "Deploymnet"}], K8S_VERSIONS[0])
    assert "Deploymnet" in finding.message, finding
