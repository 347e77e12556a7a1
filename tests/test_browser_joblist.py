"""The job list as an on-call console, clicked through per persona (issue 22), with a
screenshot of each page for each persona who can see it (test-artifacts/screenshots/):

- the failed list: the error's first line for a revealer and a superuser, masked for an
  operator without reveal and for an auditor; no page for staff without rights;
- the active list's lease holders and the Workers page: an operator sees their queue
  only, an auditor and a superuser every queue, staff without rights get 403;
- the list refreshing itself at the interval chosen, remembered across loads, idle
  while the tab is hidden;
- "select all N" acting on the N shown, not on a job that failed after the page
  loaded; past the count cap, on every matching job with the true count.

Runs with: apt-get install -y chromium && python3 dev.py test -m browser
"""

from __future__ import annotations

from typing import Any

import pytest

from queues import pulling, services
from queues.admin.joblist import BoundedCountPaginator
from queues.admin.jobs import JobAdmin
from queues.jobspec import JobSpec
from queues.models import Job, JobState

from .browsers import BROWSER_MARKS, SETUP, log_in, screenshot
from .personas import make_auditor, make_operator, make_staff, make_superuser
from .support import Api, in_a_thread, make_token, pull, push

pytestmark = BROWSER_MARKS
JOBS = "/admin/queues/job/"
FAILED = f"{JOBS}?state__exact=failed"
SECRET = "second line: jane@example.com card on file"


def _failed_job(error: str, queue: str = "mail") -> str:
    job = services.job_push(
        queue_name=queue, spec=JobSpec(data={"n": 1}), owner="family:t", actor=SETUP
    ).job
    [leased] = pulling.jobs_pull(
        queue_name=queue, count=1, lease_seconds=30, owner="family:t", actor=SETUP
    )
    assert leased.lease_id is not None
    services.job_fail(
        job_id=leased.id,
        lease_id=leased.lease_id,
        owner="family:t",
        error=error,
        code="smtp_550",
        retry=False,
        actor=SETUP,
    )
    return str(job.id)


def _log_in(browser: Any, base: str, user: Any) -> Any:
    """A page logged in as ``user`` whose live stream is refused: the list polls at its
    interval instead, and no stream outlives the test."""
    page = log_in(browser, base, user)
    page.route("**/admin/events/stream", lambda route: route.abort())
    return page


def _personas() -> dict[str, Any]:
    revealer = make_operator("rita", "mail")
    services.queue_grant(queue_name="mail", role="revealer", grantee=revealer, actor=SETUP)
    return {
        "superuser": make_superuser(),
        "revealer": revealer,
        "operator": make_operator("olga", "mail"),
        "auditor": make_auditor(),
    }


def test_the_failed_list_per_persona(live_server: Any, browser: Any) -> None:
    job_id = _failed_job(f"SMTP 550 mailbox unavailable\n{SECRET}")
    for persona, user in _personas().items():
        page = _log_in(browser, live_server.url, user)
        page.goto(live_server.url + FAILED)
        row = page.locator(f"#result_list tr:has-text('{job_id}')")
        error = row.locator("td.field-error").inner_text()
        if persona in ("superuser", "revealer"):
            assert error == "SMTP 550 mailbox unavailable", persona
        else:
            assert error == "[MASKED]", persona
            assert "SMTP 550" not in page.content(), persona
        assert SECRET not in page.content(), persona
        assert row.locator("td.field-error_code").inner_text() == "smtp_550"
        assert row.locator("td.field-attempts").inner_text() == "1 / 3"
        id_cell = row.locator("th.field-id a")
        assert id_cell.evaluate("a => a.getClientRects().length") == 1  # on one line
        assert (page.locator("select[name=action]").count() == 0) == (persona == "auditor")
        screenshot(page, f"joblist-failed-{persona}", width=1920)
        page.close()
    page = _log_in(browser, live_server.url, make_staff())
    assert page.goto(live_server.url + FAILED).status == 403
    screenshot(page, "joblist-failed-staff-403")


def test_the_date_range_filter_and_its_bad_input(live_server: Any, browser: Any) -> None:
    _failed_job("x")
    page = _log_in(browser, live_server.url, make_operator("olga", "mail"))
    page.goto(live_server.url + JOBS)
    page.click("details[data-filter-title='created_at (UTC)'] summary")  # closed until used
    form = page.locator("#range-created_at__gte")
    form.locator("input[name=created_at__gte]").fill("2000-01-01")
    form.locator("input[name=created_at__lt]").fill("2100-01-01T00:00:00Z")
    form.locator("input[type=submit]").click()
    page.wait_for_url("**created_at__lt=**")
    assert page.locator("#result_list tbody tr").count() == 1
    screenshot(page, "joblist-date-range-operator", width=1920)
    page.click("details[data-filter-title='run_at (UTC)'] summary")
    form = page.locator("#range-run_at__gte")
    form.locator("input[name=run_at__gte]").fill("last tuesday")
    form.locator("input[type=submit]").click()
    page.wait_for_url("**run_at__gte=**")
    assert "is not a date or a time" in page.locator("ul.messagelist").inner_text()
    assert page.locator("#result_list tbody tr").count() == 0
    # the other range is kept
    kept = page.locator("#range-created_at__gte input[name=created_at__gte]")
    assert kept.input_value() == "2000-01-01"
    screenshot(page, "joblist-date-range-bad-input-operator", width=1920)


def test_lease_holders_and_the_workers_page_per_persona(
    live_server: Any, browser: Any, api: Api
) -> None:
    def pulls() -> dict[str, Any]:  # the API's client may not run in Playwright's loop
        admin = make_token("svc", "*=*,admin")
        push(api, admin, queue="mail")
        push(api, admin, queue="billing")
        [held] = pull(api, make_token("mailer", "mail=pull"), queue="mail", count=1)
        pull(api, make_token("biller", "billing=pull"), queue="billing", count=1)
        return dict(held)

    held = in_a_thread(pulls)
    seen = {
        "superuser": {"mail", "billing"},
        "operator": {"mail"},
        "auditor": {"mail", "billing"},
    }
    users = _personas()
    for persona, queues in seen.items():
        page = _log_in(browser, live_server.url, users[persona])
        page.goto(f"{live_server.url}{JOBS}?state__exact=active")
        row = page.locator(f"#result_list tr:has-text('{held['id']}')")
        assert row.locator("td.field-lease_holder").inner_text() == "mailer"
        screenshot(page, f"joblist-active-{persona}", width=1920)
        page.click("#workers-link")
        page.wait_for_selector("#workers")
        rows = page.locator("#workers tbody tr")
        assert {rows.nth(i).get_attribute("data-queue") for i in range(rows.count())} == queues
        mail = page.locator("#workers tr[data-queue=mail]")
        assert mail.locator("td.name").inner_text() == "mailer"
        assert mail.locator("td.in-hand").inner_text() == "1"
        assert "s ago" in mail.locator("td.last-pull").inner_text()
        screenshot(page, f"workers-{persona}", width=1920)
        page.close()
    page = _log_in(browser, live_server.url, make_staff())
    assert page.goto(f"{live_server.url}{JOBS}workers/").status == 403
    screenshot(page, "workers-staff-403")


def test_the_list_refreshes_at_the_interval_chosen_and_remembers_it(
    live_server: Any, browser: Any
) -> None:
    _failed_job("x")
    page = _log_in(browser, live_server.url, make_operator("olga", "mail"))
    polls: list[str] = []
    page.on(
        "request",
        lambda request: polls.append(request.url)
        if request.resource_type == "fetch" and JOBS in request.url
        else None,
    )
    page.goto(live_server.url + JOBS)
    assert page.locator("#refresh-interval").input_value() == "5"
    page.select_option("#refresh-interval", "2")
    services.job_push(queue_name="mail", spec=JobSpec(data={}), owner="family:t", actor=SETUP)
    page.wait_for_function(
        "document.querySelectorAll('#result_list tbody tr').length === 2", timeout=10_000
    )
    assert "Updated" in page.locator("#joblist-updated").inner_text()
    screenshot(page, "joblist-live-operator", width=1920)
    page.reload()
    assert page.locator("#refresh-interval").input_value() == "2"  # remembered
    page.wait_for_timeout(4500)
    assert len(polls) >= 2
    page.evaluate(
        "Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});"
        "document.dispatchEvent(new Event('visibilitychange'));"
    )
    page.wait_for_timeout(300)
    hidden_at = len(polls)
    page.wait_for_timeout(4500)
    assert len(polls) == hidden_at  # nothing while hidden
    page.evaluate(
        "Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});"
        "document.dispatchEvent(new Event('visibilitychange'));"
    )
    page.wait_for_timeout(500)
    assert len(polls) > hidden_at  # at once when shown again
    page.select_option("#refresh-interval", "0")
    page.wait_for_timeout(300)
    never_at = len(polls)
    page.wait_for_timeout(4500)
    assert len(polls) == never_at


def test_an_empty_list_stays_put_until_a_job_comes(live_server: Any, browser: Any) -> None:
    _failed_job("x")  # the queue exists; nothing waits in it
    page = _log_in(browser, live_server.url, make_operator("olga", "mail"))
    page.goto(f"{live_server.url}{JOBS}?state__exact=waiting")
    page.select_option("#refresh-interval", "2")
    page.evaluate("window.stayed = true")
    page.wait_for_timeout(4500)
    assert page.evaluate("window.stayed === true")  # polled, not reloaded
    services.job_push(queue_name="mail", spec=JobSpec(data={}), owner="family:t", actor=SETUP)
    page.wait_for_selector("#result_list tbody tr", timeout=10_000)  # the table came


def _select_everything(page: Any) -> None:
    page.click("#action-toggle")
    page.click("#select-across span.question a")
    page.select_option("select[name=action]", "retry_jobs")


def test_select_all_acts_on_the_n_shown_and_past_the_cap_on_every_match(
    live_server: Any, browser: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(JobAdmin, "list_per_page", 2)
    listed = {_failed_job(f"failure {n}") for n in range(3)}
    page = _log_in(browser, live_server.url, make_operator("olga", "mail"))
    page.goto(live_server.url + FAILED)
    page.select_option("#refresh-interval", "0")  # the page stays as loaded
    assert page.locator("#select-across span.question a").inner_text() == "Select all 3 jobs"
    late = _failed_job("failed after the page loaded")
    _select_everything(page)
    screenshot(page, "joblist-select-all-operator", width=1920)
    page.click("button[name=index]")
    page.wait_for_selector("#confirm-form")
    assert "Retry 3 job(s)?" in page.locator("#content").inner_text()
    screenshot(page, "joblist-select-all-confirm-operator", width=1920)
    page.fill("#id_reason", "INC-88 relay back")
    page.click("#confirm-form input[type=submit]")
    page.wait_for_selector("text=Retry: 3 job(s).")
    states = dict(Job.objects.values_list("id", "state"))
    assert {str(job) for job, state in states.items() if state == JobState.WAITING} == listed
    assert Job.objects.get(id=late).state == JobState.FAILED

    # Past the cap: more match than the list counts.
    monkeypatch.setattr(BoundedCountPaginator, "COUNT_CAP", 3)
    more = {late, *(_failed_job(f"again {n}") for n in range(3))}
    page.goto(live_server.url + FAILED)
    question = page.locator("#select-across span.question a")
    assert question.inner_text() == "Select every matching job (more than 3)"
    assert "more than 3 jobs" in page.locator("p.paginator").inner_text()
    _select_everything(page)
    screenshot(page, "joblist-select-every-match-operator", width=1920)
    page.click("button[name=index]")
    page.wait_for_selector("#confirm-form")
    assert "Retry 4 job(s)?" in page.locator("#content").inner_text()  # the true count
    assert "every job matching" in page.locator("#selection-note").inner_text()
    screenshot(page, "joblist-select-every-match-confirm-operator", width=1920)
    page.fill("#id_reason", "INC-89")
    page.click("#confirm-form input[type=submit]")
    page.wait_for_selector("text=Retry: 4 job(s).")
    assert set(Job.objects.filter(id__in=more).values_list("state", flat=True)) == {"waiting"}


def test_select_all_still_works_after_the_rows_were_refreshed(
    live_server: Any, browser: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(JobAdmin, "list_per_page", 2)
    for n in range(3):
        _failed_job(f"failure {n}")
    page = _log_in(browser, live_server.url, make_operator("olga", "mail"))
    page.goto(live_server.url + FAILED)
    page.select_option("#refresh-interval", "2")
    fresh = _failed_job("a fourth")
    page.wait_for_function(
        "document.querySelector('#select-across span.question a').textContent"
        " === 'Select all 4 jobs'",
        timeout=10_000,
    )
    assert page.locator(f"#result_list tr:has-text('{fresh}')").count() == 1
    _select_everything(page)  # the rows swapped in are the ones checked
    assert page.locator("#result_list tbody input.action-select:checked").count() == 2
    page.click("button[name=index]")
    page.wait_for_selector("#confirm-form")
    assert "Retry 4 job(s)?" in page.locator("#content").inner_text()
