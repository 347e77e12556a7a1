"""flashQ's deployment policy: the rules the deploy files keep (the Dockerfile,
.dockerignore, deploy/compose.yaml, deploy/k8s and deploy/nginx), as checks that take
the parsed files and return Findings (empty: fine). Plain Python and PyYAML; it imports
neither Django nor flashQ's apps, and never reaches the image (.dockerignore).

``python -m deploy.policy`` checks the checkout; its tests (``test_*.py`` here) run each
check on the shipped files and on copies broken on purpose, so that none passes
vacuously."""

from __future__ import annotations

from deploy.policy.findings import Finding
from deploy.policy.repository import check_repository

__all__ = ["Finding", "check_repository"]
