"""A job's page as each persona clicks it (Playwright driving Debian's chromium): an
operator copies the masked data with its Copy button (the clipboard holds the masked
text, as shown), retries a failed job with a reason and lands back on the job, waiting;
a superuser sees the buttons a delayed job and a flow's child offer; an auditor, an
operator who may only view the job's queue and staff without rights get no button.
Each page is saved as a screenshot under test-artifacts/screenshots/jobpage-*."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings

from compliance.models import AuditEvent
from queues import pulling, services
from queues.flowspec import parse_flow
from queues.jobspec import JobSpec
from queues.models import Job, JobState

from .browsers import BROWSER_MARKS, SETUP, log_in, screenshot
from .personas import make_auditor, make_operator, make_staff, make_superuser

pytestmark = BROWSER_MARKS

SECRET_DATA = {"userId": "u1", "ssn": "078-05-1120", "order": {"id": 7, "lines": [1, 2]}}
BUTTONS = "#retry-form, #cancel-form, #promote-form, #cancel-flow-form"


def _failed_job(queue: str = "mail") -> str:
    spec = JobSpec(data=SECRET_DATA, max_attempts=1)
    job = services.job_push(queue_name=queue, spec=spec, owner="family:t", actor=SETUP).job
    [leased] = pulling.jobs_pull(
        queue_name=queue, count=1, lease_seconds=30, owner="family:t", actor=SETUP
    )
    assert leased.lease_id is not None
    services.job_fail(
        job_id=leased.id,
        lease_id=leased.lease_id,
        owner="family:t",
        error="SMTP 550 for 078-05-1120",
        retry=False,
        actor=SETUP,
    )
    return str(job.id)


def _job_url(base: str, job_id: str) -> str:
    return f"{base}/admin/queues/job/{job_id}/change/"


def test_an_operator_copies_the_masked_data_and_retries_a_failed_job_with_a_reason(
    live_server: Any, browser: Any
) -> None:
    job_id = _failed_job()
    olga = make_operator("olga", "mail")
    page = log_in(browser, live_server.url, olga)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page.goto(_job_url(live_server.url, job_id))
    shown = page.locator("#json-data").inner_text()
    assert json.loads(shown)["ssn"] == "[MASKED]" and '\n  "order": {\n    "id": 7' in shown
    assert "078-05-1120" not in page.content()
    assert page.locator(BUTTONS).count() == 1 and page.locator("#retry-form").count() == 1
    screenshot(page, "jobpage-operator-failed")

    page.click("button[data-copy=json-data]")
    page.wait_for_selector("button[data-copy=json-data]:has-text('Copied')")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == shown and "078-05-1120" not in copied
    page.click("button[data-copy=json-errors]")
    page.wait_for_selector("button[data-copy=json-errors]:has-text('Copied')")
    assert json.loads(page.evaluate("navigator.clipboard.readText()"))[0]["error"] == "[MASKED]"

    page.click("#retry-form button")
    page.wait_for_selector("#confirm-form")
    screenshot(page, "jobpage-operator-retry-confirm")
    page.fill("#id_reason", "INC-42 mailbox back")
    page.click("#confirm-form input[type=submit]")
    page.wait_for_selector("text=Retry: the job is waiting again.")
    assert page.url == _job_url(live_server.url, job_id)
    assert "Waiting" in page.locator("div.field-state").inner_text()
    assert page.locator("#cancel-form").count() == 1 and page.locator("#retry-form").count() == 0
    screenshot(page, "jobpage-operator-retried")
    assert Job.objects.get(id=job_id).state == JobState.WAITING
    [event] = AuditEvent.objects.filter(action="retry")
    assert (event.actor, event.details["reason"]) == ("user:olga", "INC-42 mailbox back")


def test_a_superuser_gets_the_buttons_each_state_offers(live_server: Any, browser: Any) -> None:
    failed = _failed_job()
    delayed = services.job_push(
        queue_name="mail", spec=JobSpec(data={"n": 1}, delay_ms=3_600_000), owner="t", actor=SETUP
    ).job
    body = {"job": {"data": {"r": 1}}, "children": [{"queue": "mail", "job": {"data": {}}}]}
    flow = services.flow_push(
        root=parse_flow(body, queue_name="mail", max_bytes=settings.MAX_JOB_BYTES),
        owner="family:t",
        actor=SETUP,
    ).root
    page = log_in(browser, live_server.url, make_superuser())
    expected = {
        failed: ("failed", ["#retry-form", "#reveal-link"]),
        str(delayed.id): ("delayed", ["#promote-form", "#cancel-form"]),
        str(flow.children[0].job.id): ("flow-child", ["#cancel-form", "#cancel-flow-form"]),
    }
    for job_id, (name, present) in expected.items():
        page.goto(_job_url(live_server.url, job_id))
        for selector in present:
            assert page.locator(selector).count() == 1, (name, selector)
        assert page.locator(BUTTONS).count() == len([s for s in present if "form" in s])
        screenshot(page, f"jobpage-superuser-{name}")
    page.goto(f"{live_server.url}/admin/queues/job/{failed}/reveal/")
    page.fill("#id_reason", "INC-42 check the address")
    page.click("#reveal-form input[type=submit]")
    page.wait_for_selector("#revealed-data")
    assert "078-05-1120" in page.locator("#revealed-data").inner_text()
    assert page.locator("button[data-copy=revealed-data]").count() == 1
    screenshot(page, "jobpage-superuser-revealed")


def test_personas_without_the_right_get_no_button(live_server: Any, browser: Any) -> None:
    job_id = _failed_job("billing")
    viewer = make_operator("olga", "mail")
    services.queue_grant(queue_name="billing", role="viewer", grantee=viewer, actor=SETUP)
    for name, user in (("auditor", make_auditor()), ("viewer", viewer)):
        page = log_in(browser, live_server.url, user)
        page.goto(_job_url(live_server.url, job_id))
        assert job_id in page.content() and "078-05-1120" not in page.content()
        assert page.locator(BUTTONS).count() == 0
        assert page.locator("button[data-copy=json-data]").count() == 1  # copy is reading
        screenshot(page, f"jobpage-{name}-failed")
        page.close()
    page = log_in(browser, live_server.url, make_staff())
    page.goto(_job_url(live_server.url, job_id))
    assert page.locator(BUTTONS).count() == 0 and "078-05-1120" not in page.content()
    screenshot(page, "jobpage-staff-failed")
