"""The Kubernetes manifests under deploy/k8s, read, and what the checks ask of them:
where a document is, its pod spec and containers, which pods a selector picks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

K8S_DIR = Path("deploy") / "k8s"
NAMESPACE = "flashq"
#: Where a document was read from (its file's name), kept on the document itself.
FILE_KEY = "__file__"


def load_manifests(root: Path) -> list[dict[str, Any]]:
    """Every document of every ``*.yaml`` under deploy/k8s, in the order of the names."""
    docs: list[dict[str, Any]] = []
    for path in sorted((root / K8S_DIR).glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                if not isinstance(doc, dict):
                    raise ValueError(f"{path.name}: a document is not a mapping")
                docs.append({**doc, FILE_KEY: path.name})
    return docs


def strip(doc: dict[str, Any]) -> dict[str, Any]:
    """The document as Kubernetes would read it (without where it came from)."""
    return {k: v for k, v in doc.items() if k != FILE_KEY}


def where(doc: dict[str, Any]) -> str:
    """The document's file, relative to the repository."""
    return str(K8S_DIR / doc.get(FILE_KEY, "?"))


def label(doc: dict[str, Any]) -> str:
    """``Kind/name``: which document of its file."""
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    if doc.get("kind") in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        spec: dict[str, Any] = doc["spec"]["template"]["spec"]
        return spec
    if doc.get("kind") == "Pod":
        spec = doc["spec"]
        return spec
    return None


def containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Init containers first, then the others."""
    yield from spec.get("initContainers") or []
    yield from spec.get("containers") or []


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if selector.get("matchExpressions"):
        raise ValueError("matchExpressions: teach deploy/policy/manifests.py to read them")
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())
