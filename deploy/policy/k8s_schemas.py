"""deploy/k8s against the Kubernetes API schemas that kubernetes-validate ships, in
strict mode (an unknown field is an error). kubernetes-validate is a development
dependency (requirements-dev.txt): ``available()`` says whether it is installed."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from deploy.policy.findings import Finding
from deploy.policy.manifests import label, strip, where

#: The oldest Kubernetes release the manifests claim to support, and the newest that
#: kubernetes-validate has schemas for: both must accept every document.
K8S_VERSIONS = ("1.30.0", "1.37.0")


def available() -> bool:
    return importlib.util.find_spec("kubernetes_validate") is not None


def schema_findings(docs: list[dict[str, Any]], version: str) -> list[Finding]:
    """Each document that Kubernetes ``version`` would refuse: a field it does not know
    or a value of the wrong type, an unknown kind or apiVersion. Raises ImportError
    without kubernetes-validate."""
    # Imported here: a development dependency, and untyped (hence Any).
    kubernetes_validate: Any = importlib.import_module("kubernetes_validate")

    findings: list[Finding] = []
    for doc in docs:
        try:
            kubernetes_validate.validate(strip(doc), version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            findings.append(
                Finding(
                    "k8s.schema",
                    where(doc),
                    f"{label(doc)} (Kubernetes {version}): {path}: {error.message}",
                )
            )
        except kubernetes_validate.SchemaNotFoundError as error:
            # The command line only warns about this: an unknown kind or apiVersion.
            findings.append(
                Finding(
                    "k8s.schema",
                    where(doc),
                    f"{label(doc)} (Kubernetes {version}): {error.message}",
                )
            )
    return findings
