"""The admin as people click it: Playwright driving Debian's chromium (headless,
``--no-sandbox``) against a live server on the test database.

An operator logs in, watches the dashboard refresh itself, finds a failed job by
searching its error text, retries it (confirming with a reason) and sees its state
change. A revealer opens a masked job, reveals it with a reason, sees the values once
and masked again after a reload. An auditor logs in, exports the audit trail and finds
no destructive control anywhere it looks. An operator goes from a queue's page to its
schedules and pauses one, with a reason; adds a webhook there and sees its secret once.
An operator opens a flow's parent job, sees its
children with their states, follows one and back, and cancels the whole flow with a
reason.

Runs with: apt-get install -y chromium && python3 dev.py test -m browser
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings

from compliance.models import AuditEvent
from queues import pulling, services
from queues.flowspec import parse_flow
from queues.jobspec import JobSpec
from queues.models import Job, JobState, Queue, Schedule, Webhook
from queues.schedulespec import parse_schedule_spec

from .browsers import BROWSER_MARKS, SETUP, log_in
from .personas import make_auditor, make_operator

pytestmark = BROWSER_MARKS


def _failed_job(error: str, data: dict[str, Any] | None = None) -> str:
    spec = JobSpec(data=data or {"to": "a@example.com"})
    job = services.job_push(queue_name="mail", spec=spec, owner="family:t", actor=SETUP).job
    [leased] = pulling.jobs_pull(
        queue_name="mail", count=1, lease_seconds=30, owner="family:t", actor=SETUP
    )
    assert leased.lease_id is not None
    services.job_fail(
        job_id=leased.id,
        lease_id=leased.lease_id,
        owner="family:t",
        error=error,
        retry=False,
        actor=SETUP,
    )
    return str(job.id)


def test_an_operator_finds_a_failed_job_by_its_error_and_retries_it(
    live_server: Any, browser: Any
) -> None:
    job_id = _failed_job("SMTP 550 mailbox unavailable")
    olga = make_operator("olga", "mail")
    # Error texts are masked, and searched only where she may reveal them.
    services.queue_grant(queue_name="mail", role="revealer", grantee=olga, actor=SETUP)
    page = log_in(browser, live_server.url, olga)
    failed = page.locator("#dashboard tr[data-queue=mail] td.failed")
    assert failed.inner_text() == "1"  # the admin's home is the dashboard
    page.select_option("#refresh-interval", "2")
    _failed_job("another failure")
    page.wait_for_function(
        "document.querySelector('#dashboard tr[data-queue=mail] td.failed').textContent === '2'",
        timeout=10_000,
    )
    page.click("#content-main >> text=Jobs")
    page.fill("#searchbar", "mailbox unavailable")
    page.press("#searchbar", "Enter")
    row = page.locator(f"tr:has-text('{job_id}')")
    assert row.locator("td.field-state").inner_text().lower() == "failed"
    row.locator("input.action-select").check()
    page.select_option("select[name=action]", "retry_jobs")
    page.click("button[name=index]")
    page.wait_for_selector("#confirm-form")
    page.fill("#id_reason", "INC-42 mail server fixed")
    page.click("#confirm-form input[type=submit]")
    page.wait_for_selector("text=Retry: 1 job(s).")
    assert Job.objects.get(id=job_id).state == JobState.WAITING
    page.fill("#searchbar", job_id)
    page.press("#searchbar", "Enter")
    state = page.locator(f"tr:has-text('{job_id}') td.field-state").inner_text()
    assert state.lower() == "waiting"


def test_an_operator_pauses_a_schedule_from_its_queue_s_page(
    live_server: Any, browser: Any
) -> None:
    spec = parse_schedule_spec({"every_ms": 3_600_000, "data": {"kind": "digest"}})
    services.schedule_save(queue_name="mail", name="digest", spec=spec, owner="t", actor=SETUP)
    olga = make_operator("olga", "mail")
    page = log_in(browser, live_server.url, olga)
    mail = Queue.objects.get(name="mail")
    page.goto(f"{live_server.url}/admin/queues/queue/{mail.pk}/change/")
    page.click("#schedules-link")
    row = page.locator("tr:has-text('digest')")
    assert row.locator("td.field-timing").inner_text() == "every 3600000 ms"
    row.locator("input.action-select").check()
    page.select_option("select[name=action]", "pause_schedules")
    page.click("button[name=index]")
    page.wait_for_selector("#confirm-form")
    page.fill("#id_reason", "INC-77 digest storm")
    page.click("#confirm-form input[type=submit]")
    page.wait_for_selector("text=Pause: 1 schedule(s).")
    assert Schedule.objects.get(name="digest").paused
    [event] = AuditEvent.objects.filter(action="schedule.pause")
    assert (event.actor, event.details["reason"]) == ("user:olga", "INC-77 digest storm")


def test_an_operator_adds_a_webhook_and_sees_its_secret_once(
    live_server: Any, browser: Any
) -> None:
    olga = make_operator("olga", "mail")
    page = log_in(browser, live_server.url, olga)
    mail = Queue.objects.get(name="mail")
    page.goto(f"{live_server.url}/admin/queues/queue/{mail.pk}/change/")
    page.click("#webhooks-link")
    page.click(".addlink")
    page.select_option("#id_queue", str(mail.pk))
    page.fill("#id_name", "crm")
    page.fill("#id_url", "https://crm.example.com/flashq")
    page.check("input[name=events][value=completed]")
    page.fill("#id_reason", "CHG-12 CRM sync")
    page.click("input[name=_save]")
    secret = page.locator("#webhook-secrets code.secret").inner_text()
    assert secret.startswith("whsec_") and Webhook.objects.get().secret == secret
    page.click("text=Back to the webhooks")
    row = page.locator("tr:has-text('crm')")
    assert "crm.example.com" in row.inner_text()
    row.locator("th a").click()
    assert secret not in page.content()
    [event] = AuditEvent.objects.filter(action="webhook.save")
    assert (event.actor, event.details["reason"]) == ("user:olga", "CHG-12 CRM sync")


def test_a_revealer_sees_a_job_in_clear_once_for_a_reason(live_server: Any, browser: Any) -> None:
    job_id = _failed_job("login refused: password=hunter2", {"to": "a@x.example", "apiKey": "ak-7"})
    rita = make_operator("rita", "mail")
    services.queue_grant(queue_name="mail", role="revealer", grantee=rita, actor=SETUP)
    page = log_in(browser, live_server.url, rita)
    page.goto(f"{live_server.url}/admin/queues/job/{job_id}/change/")
    masked = page.locator("#content-main").inner_text()
    assert "[MASKED]" in masked and "hunter2" not in masked and "ak-7" not in masked
    page.click("#reveal-link")
    page.fill("#id_reason", "INC-51 customer callback")
    page.click("#reveal-form input[type=submit]")
    shown = page.locator("#revealed").inner_text()
    assert "password=hunter2" in shown and '"ak-7"' in shown
    page.reload()  # posts the used form again: back to the masked job page
    page.wait_for_selector("text=shown once already")
    again = page.locator("#content-main").inner_text()
    assert "[MASKED]" in again and "hunter2" not in again and "ak-7" not in again
    [event] = AuditEvent.objects.filter(action="admin.reveal")
    assert (event.actor, event.details) == ("user:rita", {"reason": "INC-51 customer callback"})


def test_an_auditor_exports_the_trail_and_meets_no_destructive_control(
    live_server: Any, browser: Any
) -> None:
    auditor = make_auditor()
    job_id = _failed_job("timeout")
    page = log_in(browser, live_server.url, auditor)
    page.click("text=Audit events")
    page.click("text=Export…")
    page.fill("#id_since", "2000-01-01 00:00")
    page.fill("#id_until", "2100-01-01 00:00")
    page.select_option("#id_format", "csv")
    with page.expect_download() as download:
        page.click("#export-form input[type=submit]")
    content = open(download.value.path()).read()  # noqa: SIM115
    assert content.startswith("id,seq,created_at,action") and ",push," in content
    for path in (
        "/admin/compliance/auditevent/",
        "/admin/queues/job/",
        f"/admin/queues/job/{job_id}/change/",
        "/admin/queues/queue/",
        "/admin/queues/schedule/",
        "/admin/queues/webhook/",
        "/admin/compliance/retentionpolicy/",
    ):
        page.goto(live_server.url + path)
        for control in ("select[name=action]", ".addlink", "input[name=_save]", ".deletelink"):
            assert page.locator(control).count() == 0, (path, control)


def test_the_dashboard_stops_refreshing_while_the_tab_is_hidden(
    live_server: Any, browser: Any
) -> None:
    _failed_job("x")  # the queue exists
    olga = make_operator("olga", "mail")
    page = log_in(browser, live_server.url, olga)
    # The live stream is down (refused here): the dashboard polls as it always did.
    page.route("**/admin/events/stream", lambda route: route.abort())
    page.reload()
    polls: list[str] = []
    page.on(
        "request",
        lambda request: polls.append(request.url) if "dashboard.json" in request.url else None,
    )
    page.select_option("#refresh-interval", "2")
    page.wait_for_timeout(4500)
    assert len(polls) >= 2  # refreshing while visible
    page.evaluate(
        "Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});"
        "document.dispatchEvent(new Event('visibilitychange'));"
    )
    hidden_at = len(polls)
    page.wait_for_timeout(4500)
    assert len(polls) == hidden_at  # nothing while hidden
    page.evaluate(
        "Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});"
        "document.dispatchEvent(new Event('visibilitychange'));"
    )
    page.wait_for_timeout(500)
    assert len(polls) > hidden_at  # back at once when shown again


def test_an_operator_opens_a_parent_sees_its_children_and_cancels_the_flow(
    live_server: Any, browser: Any
) -> None:
    body = {
        "job": {"data": {"report": "q3"}},
        "children": [{"queue": "mail", "job": {"data": {"part": n}}} for n in range(3)],
    }
    root = parse_flow(body, queue_name="mail", max_bytes=settings.MAX_JOB_BYTES)
    flow = services.flow_push(root=root, owner="family:t", actor=SETUP).root
    parent, kids = str(flow.job.id), [str(child.job.id) for child in flow.children]
    olga = make_operator("olga", "mail")
    page = log_in(browser, live_server.url, olga)
    page.goto(f"{live_server.url}/admin/queues/job/{parent}/change/")
    children = page.locator("#relation-children li")
    assert children.count() == 3
    assert all(
        f"{kid} (mail) waiting" in children.nth(i).inner_text() for i, kid in enumerate(kids)
    )
    page.click(f"#relation-children a:has-text('{kids[0]}')")  # a child, and back up
    page.click(f"#relation-parent a:has-text('{parent}')")
    assert parent in page.url and "Waiting Children" in page.locator("div.field-state").inner_text()
    page.click("#cancel-flow-form button")
    page.wait_for_selector("#confirm-form")
    page.fill("#id_reason", "INC-20 wrong quarter")
    page.click("#confirm-form input[type=submit]")
    page.wait_for_selector("text=Cancel flow: 4 job(s) cancelled.")  # back on the job's page
    assert page.url.endswith(f"/admin/queues/job/{parent}/change/")
    assert {job.state for job in Job.objects.filter(id__in=[parent, *kids])} == {JobState.CANCELLED}
    [event] = AuditEvent.objects.filter(action="flow.cancel")
    assert (event.actor, event.details["reason"]) == ("user:olga", "INC-20 wrong quarter")
    page.goto(f"{live_server.url}/admin/queues/job/{parent}/change/")
    assert page.locator("#relation-children li:has-text('cancelled')").count() == 3


def test_the_dashboard_and_the_job_list_change_live_after_a_push(
    live_server: Any, browser: Any
) -> None:
    _failed_job("x")  # the queue exists
    page = log_in(browser, live_server.url, make_operator("olga", "mail"))
    page.select_option("#refresh-interval", "60")  # polling alone would take a minute
    page.wait_for_function("window.flashqLive && window.flashqLive.open", timeout=10_000)
    waiting = "document.querySelector('#dashboard tr[data-queue=mail] td.waiting').textContent"
    assert page.evaluate(waiting) == "0"
    services.job_push(queue_name="mail", spec=JobSpec(data={}), owner="family:t", actor=SETUP)
    page.wait_for_function(f"{waiting} === '1'", timeout=10_000)
    assert page.evaluate("window.flashqLive.events") >= 1

    page.goto(live_server.url + "/admin/queues/job/")
    page.wait_for_function("window.flashqLive && window.flashqLive.open", timeout=10_000)
    rows = page.locator("#result_list tbody tr")
    before = rows.count()
    services.job_push(queue_name="mail", spec=JobSpec(data={}), owner="family:t", actor=SETUP)
    page.wait_for_function(
        f"document.querySelectorAll('#result_list tbody tr').length === {before + 1}",
        timeout=10_000,
    )
    assert "Updated" in page.locator("#joblist-updated").inner_text()
    page.close()
    time.sleep(settings.EVENT_STREAM_HEARTBEAT_SECONDS + 0.5)  # its last poll ends
