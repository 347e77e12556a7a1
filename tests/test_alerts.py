"""deploy/prometheus/alerts.yml: valid rules, a promtool test case per alert, and only
metrics that /metrics really serves."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.test import Client

from .support import make_token

PROMETHEUS = Path(settings.BASE_DIR) / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="needs promtool: apt-get install prometheus (.ci/run does)"
)


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=PROMETHEUS, capture_output=True, text=True, check=False
    )


@pytest.mark.e2e
@needs_promtool
def test_the_rules_are_valid() -> None:
    checked = _promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.e2e
@needs_promtool
def test_every_alert_fires_and_stays_quiet_as_its_cases_say() -> None:
    tested = _promtool("test", "rules", "alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_test_case() -> None:
    rules = (PROMETHEUS / "alerts.yml").read_text()
    cases = (PROMETHEUS / "alerts.test.yml").read_text()
    alerts = set(re.findall(r"- alert: (\w+)", rules))
    assert len(alerts) == 8
    assert alerts == set(re.findall(r"alertname: (\w+)", cases))


@pytest.mark.django_db
def test_the_alerts_use_only_metrics_the_app_serves() -> None:
    scraper = make_token("prometheus", "*=metrics")
    answer = Client(HTTP_HOST="localhost").get("/metrics", HTTP_AUTHORIZATION=f"Bearer {scraper}")

    def family(name: str) -> str:
        return re.sub(r"_(total|bucket|count|sum)$", "", name)

    text = answer.content.decode()
    served = {family(name) for name in re.findall(r"^# TYPE (\w+) ", text, re.MULTILINE)}
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    expressions = " ".join(rule["expr"] for group in rules["groups"] for rule in group["rules"])
    used = {family(name) for name in re.findall(r"\bflashq_\w+", expressions)}
    assert len(used) >= 8
    assert used <= served, used - served
