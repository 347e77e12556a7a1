"""Issue 22's operator console, clicked through per persona with screenshots (under
test-artifacts/screenshots/): the index with "Internals" for superusers only; a grant
on ``mail*`` covering a queue made after it; "History" on a queue listing its audit
events (with the audit trail's link for auditors, refused to staff without rights);
the forms' plain labels, empty JSON boxes and prefilled token expiry; a bulk action
that did only some of its rows saying so; the access review listing a pattern grant.

Runs with: python3 dev.py test -m browser
"""

from __future__ import annotations

from io import StringIO
from typing import Any

from django.core.management import call_command

from compliance.models import AuditEvent
from queues import services
from queues.jobspec import JobSpec
from queues.models import Queue, Schedule
from queues.schedulespec import parse_schedule_spec
from security.services import token_create

from .browsers import BROWSER_MARKS, SETUP, log_in, screenshot
from .personas import make_auditor, make_operator, make_staff, make_staff_user, make_superuser

pytestmark = BROWSER_MARKS


def _sections(page: Any) -> list[str]:
    captions = page.locator("#content-main .module caption").all_inner_texts()
    return [text.strip().lower() for text in captions]  # shown in capitals by CSS


def test_the_index_shows_internals_to_superusers_only(live_server: Any, browser: Any) -> None:
    make_operator("olga", "mail")
    people = {
        "superuser": make_superuser(),
        "operator": "olga",
        "auditor": make_auditor(),
        "staff": make_staff(),
    }
    for persona, user in people.items():
        page = log_in(browser, live_server.url, user)
        sections = _sections(page)
        screenshot(page, f"console-index-{persona}")
        if persona == "superuser":
            assert sections[-1] == "internals", sections
            assert page.locator("#content-main a:has-text('Failed tasks (django-q2)')").count() == 1
            page.click("#content-main caption a:has-text('Internals')")
            assert "Internals administration" in page.locator("#content").inner_text()
            screenshot(page, "console-internals-superuser")
        else:
            assert "internals" not in sections and "Failed tasks" not in page.content(), persona
            response = page.goto(f"{live_server.url}/admin/django_q/failure/")
            assert response is not None and response.status == 403, persona
        page.close()


def test_a_pattern_grant_covers_a_queue_made_after_it(live_server: Any, browser: Any) -> None:
    make_staff_user("olga", "Operators")
    call_command("grant_queue", "mail*", "--user", "olga", "--role", "operator", stdout=StringIO())
    for name in ("mail:eu", "billing"):  # made after the grant
        services.job_push(
            queue_name=name, spec=JobSpec(data={"n": 1}), owner="family:t", actor=SETUP
        )
    page = log_in(browser, live_server.url, "olga")
    page.goto(f"{live_server.url}/admin/queues/queue/")
    listed = page.locator("#result_list").inner_text()
    assert "mail:eu" in listed and "billing" not in listed
    screenshot(page, "console-pattern-grant-queues-operator")
    page.check("#result_list input[name=_selected_action]")
    page.select_option("select[name=action]", "pause_queues")
    page.click("button[name=index]")
    page.fill("#id_reason", "INC-7 mail provider down")
    page.click("#confirm-form input[type=submit]")
    page.wait_for_selector("text=Pause: 1 queue(s).")
    assert Queue.objects.get(name="mail:eu").paused
    assert AuditEvent.objects.get(action="pause").actor == "user:olga"


def test_history_lists_a_queue_s_audit_events_per_persona(live_server: Any, browser: Any) -> None:
    make_operator("olga", "mail")
    services.queue_set_paused(name="mail", paused=True, actor=SETUP, reason="INC-3 backlog")
    mail = Queue.objects.get(name="mail")
    change = f"{live_server.url}/admin/queues/queue/{mail.pk}/change/"
    for persona, user in {
        "superuser": make_superuser(),
        "auditor": make_auditor(),
        "operator": "olga",
    }.items():
        page = log_in(browser, live_server.url, user)
        page.goto(change)
        with page.expect_navigation():  # read the page once it has loaded, not mid-parse
            page.click("a.historylink")
        rows = page.locator("#change-history tbody tr")
        assert rows.count() >= 2
        assert "INC-3 backlog" in page.locator("#change-history").inner_text()
        trail = page.locator("#audit-trail-link")
        screenshot(page, f"console-history-queue-{persona}")
        if persona == "operator":
            assert trail.count() == 0  # operators do not read the audit trail
        else:
            with page.expect_navigation():
                trail.click()
            listed = page.locator("#result_list").inner_text()
            assert "pause" in listed and "queue.grant" in listed
        page.close()
    page = log_in(browser, live_server.url, make_staff())
    response = page.goto(f"{change.removesuffix('change/')}history/")
    assert response is not None and response.status in (403, 404)


def test_forms_read_as_plain_words(live_server: Any, browser: Any) -> None:
    Queue.objects.create(name="mail")
    page = log_in(browser, live_server.url, make_superuser())
    page.goto(f"{live_server.url}/admin/security/apitoken/add/")
    form = page.locator("#content-main").inner_text()
    assert "Allowed addresses" in form and "Allowed cidrs" not in form
    assert "Created at" not in form and "Public ID" not in form
    assert page.input_value("#id_expires_at_0") != "" and page.input_value("#id_expires_at_1") != ""
    assert page.input_value("#id_allowed_cidrs") == ""
    screenshot(page, "console-token-add-superuser")
    page.goto(f"{live_server.url}/admin/queues/queue/add/")
    form = page.locator("#content-main").inner_text()
    assert "JSON schema" in form and "PII fields" in form and "Created at" not in form
    assert (
        page.input_value("#id_json_schema") == "" and page.input_value("#id_card_allowlist") == ""
    )
    screenshot(page, "console-queue-add-superuser")
    page.goto(f"{live_server.url}/admin/queues/queue/")
    page.click("#result_list a:has-text('mail')")
    assert page.input_value("#id_json_schema") == ""
    screenshot(page, "console-queue-change-superuser")
    page.close()
    operator = log_in(browser, live_server.url, make_operator("olga", "mail"))
    operator.goto(f"{live_server.url}/admin/queues/queue/")
    operator.click("#result_list a:has-text('mail')")
    assert operator.input_value("#id_json_schema") == ""
    assert "null" not in operator.locator("#content-main").inner_text()
    screenshot(operator, "console-queue-change-operator")


def _schedule(queue: str, name: str) -> Schedule:
    owner, _ = token_create(name=f"owner-{queue}", rules=[], actor=SETUP)
    spec = parse_schedule_spec({"every_ms": 3_600_000, "data": {"n": 1}})
    schedule, _ = services.schedule_save(
        queue_name=queue, name=name, spec=spec, owner=f"family:{owner.family}", actor=SETUP
    )
    return schedule


def test_a_bulk_action_that_did_some_says_so(live_server: Any, browser: Any) -> None:
    olga = make_operator("olga", "mail")
    Queue.objects.create(name="billing")
    services.queue_grant(queue_name="billing", role="viewer", grantee=olga, actor=SETUP)
    _schedule("mail", "nightly")
    _schedule("billing", "invoices")
    page = log_in(browser, live_server.url, olga)
    page.goto(f"{live_server.url}/admin/queues/schedule/")
    page.check("#action-toggle")
    page.select_option("select[name=action]", "pause_schedules")
    page.click("button[name=index]")
    page.fill("#id_reason", "INC-8")
    page.click("#confirm-form input[type=submit]")
    warning = page.locator("ul.messagelist li.warning").first
    assert warning.inner_text() == "Pause: 1 of 2 schedule(s); refused:"
    assert page.locator("ul.messagelist li.success").count() == 0
    screenshot(page, "console-schedules-bulk-some-operator")
    assert Schedule.objects.get(name="nightly").paused
    assert not Schedule.objects.get(name="invoices").paused
    auditor = log_in(browser, live_server.url, make_auditor())
    auditor.goto(f"{live_server.url}/admin/queues/schedule/")
    assert auditor.locator("select[name=action]").count() == 0
    screenshot(auditor, "console-schedules-auditor")


def test_the_access_review_lists_a_pattern_grant(live_server: Any, browser: Any) -> None:
    make_staff_user("olga", "Operators")
    call_command("grant_queue", "mail*", "--user", "olga", "--role", "viewer", stdout=StringIO())
    for persona, user in {"auditor": make_auditor(), "superuser": make_superuser()}.items():
        page = log_in(browser, live_server.url, user)
        page.click("#access-review-link a")
        assert "queues.view_queue on queue pattern mail*" in page.locator("#content").inner_text()
        screenshot(page, f"console-access-review-{persona}")
        page.close()
    page = log_in(browser, live_server.url, "olga")
    response = page.goto(f"{live_server.url}/admin/access-review/")
    assert response is not None and response.status == 403


def test_each_object_s_history_and_change_page_per_persona(live_server: Any, browser: Any) -> None:
    """Every History page and the changed forms, captured for whoever may see them."""
    from compliance import retention
    from compliance.models import RetentionPolicy

    olga = make_operator("olga", "mail")
    job = services.job_push(
        queue_name="mail", spec=JobSpec(data={"n": 1}), owner="family:t", actor=SETUP
    ).job
    schedule = _schedule("mail", "nightly")
    hook, _ = services.webhook_save(
        queue_name="mail",
        name="h",
        url="https://hooks.example.com/a",
        events=["failed"],
        actor=SETUP,
    )
    token, _ = token_create(name="billing", rules=[], actor=SETUP)
    policy = retention.retention_policy_save(
        policy=RetentionPolicy(queue_pattern="mail*", target="completed", max_age_days=7),
        actor=SETUP,
    )
    queue = Queue.objects.get(name="mail")
    objects = {
        "queue": f"queues/queue/{queue.pk}",
        "job": f"queues/job/{job.pk}",
        "schedule": f"queues/schedule/{schedule.pk}",
        "webhook": f"queues/webhook/{hook.pk}",
        "token": f"security/apitoken/{token.pk}",
        "policy": f"compliance/retentionpolicy/{policy.pk}",
    }
    may_see = {
        "superuser": (make_superuser(), set(objects)),
        "operator": (olga, {"queue", "job", "schedule", "webhook", "policy"}),
        "auditor": (make_auditor(), {"queue", "job", "schedule", "webhook", "policy"}),
    }
    for persona, (user, seen) in may_see.items():
        page = log_in(browser, live_server.url, user)
        for kind, path in objects.items():
            response = page.goto(f"{live_server.url}/admin/{path}/change/")
            assert response is not None
            if kind not in seen:
                assert response.status in (302, 403, 404), (persona, kind)
                continue
            assert response.status == 200, (persona, kind)
            screenshot(page, f"console-{kind}-change-{persona}")
            page.click("a.historylink")
            assert page.locator("#change-history tbody tr").count() >= 1, (persona, kind)
            screenshot(page, f"console-history-{kind}-{persona}")
        page.close()
