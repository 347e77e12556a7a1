"""``python -m deploy.policy [ROOT]``: check the deploy files of the checkout (or of
ROOT); print each finding and exit 1, or exit 0 when there is none."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deploy.policy import k8s_schemas
from deploy.policy.repository import ROOT, check_repository


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.policy",
        description="Check the Dockerfile, .dockerignore, deploy/compose.yaml, deploy/k8s "
        "and deploy/nginx against flashQ's deployment rules.",
    )
    parser.add_argument("root", nargs="?", type=Path, default=ROOT, help="the checkout")
    args = parser.parse_args(argv)
    schemas = k8s_schemas.available()
    if not schemas:
        print(
            "kubernetes-validate is not installed (pip install -r requirements-dev.txt): "
            "the manifests were not validated against the Kubernetes schemas",
            file=sys.stderr,
        )
    findings = check_repository(args.root, schemas=schemas)
    for finding in findings:
        print(finding)
    if findings:
        print(f"{len(findings)} finding(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
