"""The job list as an on-call console (issue 22): the failed list's columns (error code,
the error's first line only for a user with the reveal right on the job's queue,
attempts, when it failed, the subject), who holds an active job's lease and until when,
date-range filters that filter exactly and refuse bad input with a message, and a
page whose query count does not grow with its rows."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from compliance.audit import Action
from compliance.models import AuditEvent
from queues import services
from queues.models import Job
from security.models import ApiToken
from security.services import token_rotate

from .personas import logged_in, make_auditor, make_operator, make_staff, make_superuser
from .support import SETUP, Api, job_in, make_token, pull, push

pytestmark = pytest.mark.django_db
JOBS = "/admin/queues/job/"
SECRET = "card 4000-REDACTED for jane@example.com"


def _failed(api: Api, token: str, queue: str, error: str, code: str = "") -> str:
    job_id = str(push(api, token, queue=queue, data={"n": 1}, subject="u-41")["id"])
    [leased] = pull(api, token, queue=queue, count=1)
    body = {"lease_id": leased["lease_id"], "error": error, "retry": False}
    if code:
        body["code"] = code
    assert api.post(f"/jobs/{job_id}/fail", body, as_=token).status == 200
    return job_id


@pytest.fixture
def failed(api: Api) -> dict[str, str]:
    token = make_token("svc", "*=*,admin")
    return {
        "mail": _failed(api, token, "mail", f"SMTP 550 refused\n{SECRET}", code="smtp_550"),
        "billing": _failed(api, token, "billing", f"gateway said no\n{SECRET}", code="declined"),
    }


def _rita() -> Client:
    """An operator of mail and billing who may reveal mail's jobs only."""
    rita = make_operator("rita", "mail", "billing")
    services.queue_grant(queue_name="mail", role="revealer", grantee=rita, actor=SETUP)
    return logged_in(rita)


def _cells(page: Any, job_id: str) -> dict[str, str]:
    """The row of ``job_id``: its cells' text by column class (field-<name>)."""
    html = page.content.decode()
    row = re.search(rf"<tr>(?:(?!</tr>).)*{job_id}(?:(?!</tr>).)*</tr>", html, re.S)
    assert row, f"{job_id} is not listed"
    return {
        name: re.sub(r"<[^>]+>", "", text).strip()
        for name, text in re.findall(r'<t[dh] class="field-([\w]+)"[^>]*>(.*?)</t[dh]>', row[0])
    }


def test_the_failed_list_shows_the_first_line_only_where_the_user_may_reveal(
    failed: dict[str, str],
) -> None:
    page = _rita().get(JOBS, {"state__exact": "failed"})
    mail, billing = _cells(page, failed["mail"]), _cells(page, failed["billing"])
    assert mail["error"] == "SMTP 550 refused" and mail["error_code"] == "smtp_550"
    assert billing["error"] == "[MASKED]" and billing["error_code"] == "declined"
    assert mail["attempts"] == "1 / 3" and mail["subject"] == "u-41"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", mail["failed_at"])
    html = page.content.decode()
    # Only the first line, and only of mail's job: the rest of each error stays sealed.
    assert SECRET not in html and "gateway said no" not in html
    [event] = AuditEvent.objects.filter(action=Action.ADMIN_JOB_SEARCH)
    assert event.details["errors_in_clear"] == [failed["mail"]]
    assert set(event.job_ids) == {failed["mail"], failed["billing"]}


@pytest.mark.parametrize("persona", ["operator", "auditor"])
def test_without_the_reveal_right_no_error_text_reaches_the_page(
    failed: dict[str, str], persona: str
) -> None:
    user = make_operator("olga", "mail", "billing") if persona == "operator" else make_auditor()
    page = logged_in(user).get(JOBS, {"state__exact": "failed"})
    html = page.content.decode()
    assert "SMTP 550" not in html and "gateway said no" not in html and SECRET not in html
    assert _cells(page, failed["mail"])["error"] == "[MASKED]"
    assert _cells(page, failed["mail"])["error_code"] == "smtp_550"
    [event] = AuditEvent.objects.filter(action=Action.ADMIN_JOB_SEARCH)
    assert "errors_in_clear" not in event.details


def test_a_superuser_holds_the_reveal_right_everywhere(failed: dict[str, str]) -> None:
    page = logged_in(make_superuser()).get(JOBS, {"state__exact": "failed"})
    assert _cells(page, failed["billing"])["error"] == "gateway said no"
    assert SECRET not in page.content.decode()


def test_staff_without_rights_gets_no_list(failed: dict[str, str]) -> None:
    assert logged_in(make_staff()).get(JOBS, {"state__exact": "failed"}).status_code == 403


def test_the_failed_list_s_queries_do_not_grow_with_its_rows(api: Api) -> None:
    token = make_token("svc", "*=*,admin")
    client = _rita()

    def queries() -> int:
        from django.db import connection

        with CaptureQueriesContext(connection) as captured:
            assert client.get(JOBS, {"state__exact": "failed"}).status_code == 200
        return len(captured)

    for _ in range(2):
        _failed(api, token, "mail", "one")
    queries()  # the session's first page does more (its permissions, read once)
    few = queries()
    for _ in range(8):
        _failed(api, token, "mail", "more")
    assert queries() == few


def test_the_lease_holders_names_take_one_query_whatever_their_number(api: Api) -> None:
    admin = make_token("svc", "*=*,admin")
    client = logged_in(make_operator("olga", "mail"))

    def queries() -> int:
        from django.db import connection

        with CaptureQueriesContext(connection) as captured:
            assert client.get(JOBS, {"state__exact": "active"}).status_code == 200
        return len(captured)

    def held_by(names: range) -> None:
        for n in names:
            push(api, admin, queue="mail")
            pull(api, make_token(f"worker-{n}", "mail=pull"), queue="mail", count=1)

    held_by(range(2))
    queries()  # the session's first page does more (its permissions, read once)
    few = queries()
    held_by(range(2, 8))
    assert queries() == few


def test_the_plain_list_shows_no_subject_and_no_error(failed: dict[str, str]) -> None:
    html = _rita().get(JOBS).content.decode()
    assert "u-41" not in html and "SMTP 550" not in html and "[MASKED]" not in html
    assert 'class="field-run_at"' in html  # the run_at column


def test_an_active_job_shows_its_lease_holder_and_when_the_lease_expires(api: Api) -> None:
    mailer = make_token("mailer", "mail=push,pull")
    push(api, mailer, queue="mail")
    [held] = pull(api, mailer, queue="mail", count=1)
    waiting = str(push(api, mailer, queue="mail")["id"])
    operator = logged_in(make_operator("olga", "mail"))
    cells = _cells(operator.get(JOBS, {"state__exact": "active"}), held["id"])
    assert cells["lease_holder"] == "mailer"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", cells["lease_expires"])
    Job.objects.filter(id=held["id"]).update(lease_expires_at=timezone.now() - timedelta(seconds=5))
    page = operator.get(JOBS)
    assert _cells(page, held["id"])["lease_holder"] == "mailer"  # the plain list too
    assert _cells(page, waiting)["lease_holder"] == "-"  # Django's empty cell
    active = operator.get(JOBS, {"state__exact": "active"})
    assert _cells(active, held["id"])["lease_expires"].endswith("(expired)")


def test_a_rotated_family_is_named_by_its_current_token(api: Api) -> None:
    raw = make_token("billing-worker", "mail=push,pull")
    token_rotate(name="billing-worker", overlap_hours=1, actor=SETUP)
    push(api, raw, queue="mail")
    [held] = pull(api, raw, queue="mail", count=1)  # with the old token, now renamed
    assert ApiToken.objects.filter(name__startswith="billing-worker~").exists()
    page = logged_in(make_operator("olga", "mail")).get(JOBS, {"state__exact": "active"})
    assert _cells(page, held["id"])["lease_holder"] == "billing-worker"


AT = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
def timed() -> dict[str, str]:
    """Jobs created at 09:59:59.999, 10:00:00, 10:59:59.999 and 11:00:00 UTC on
    2026-03-01 (run_at the same)."""
    jobs = {}
    for name, at in {
        "before": AT - timedelta(milliseconds=1),
        "start": AT,
        "last": AT + timedelta(hours=1, milliseconds=-1),
        "end": AT + timedelta(hours=1),
    }.items():
        job = job_in("mail")
        Job.objects.filter(id=job.id).update(created_at=at, run_at=at)
        jobs[name] = str(job.id)
    return jobs


def _listed(page: Any) -> set[str]:
    text = page.content.decode()
    return {str(job) for job in Job.objects.values_list("id", flat=True) if str(job) in text}


@pytest.mark.parametrize("field", ["created_at", "run_at"])
@pytest.mark.parametrize(
    ("since", "before"),
    [
        ("2026-03-01T10:00:00Z", "2026-03-01T11:00:00Z"),
        ("2026-03-01T10:00:00+00:00", "2026-03-01T11:00:00+00:00"),
        ("2026-03-01T11:00:00+01:00", "2026-03-01T12:00:00+01:00"),
        ("2026-03-01 10:00", "2026-03-01 11:00:00"),
        ("2026-03-01T10:00:00 00:00", "2026-03-01T11:00:00 00:00"),  # a "+" sent unescaped
    ],
)
def test_a_date_range_filters_exactly(
    timed: dict[str, str], field: str, since: str, before: str
) -> None:
    page = logged_in(make_operator("olga", "mail")).get(
        JOBS, {f"{field}__gte": since, f"{field}__lt": before}
    )
    assert _listed(page) == {timed["start"], timed["last"]}


def test_a_date_is_its_midnight_and_either_bound_may_be_left_open(timed: dict[str, str]) -> None:
    client = logged_in(make_operator("olga", "mail"))
    assert _listed(client.get(JOBS, {"created_at__gte": "2026-03-02"})) == set()
    assert _listed(client.get(JOBS, {"created_at__lt": "2026-03-02"})) == set(timed.values())
    assert _listed(client.get(JOBS, {"created_at__gte": "2026-03-01T11:00:00Z"})) == {timed["end"]}


def test_a_finished_at_range_lists_jobs_finished_in_it(failed: dict[str, str]) -> None:
    client = logged_in(make_superuser())
    Job.objects.filter(id=failed["mail"]).update(finished_at=AT)
    assert _listed(
        client.get(JOBS, {"finished_at__gte": "2026-03-01", "finished_at__lt": "2026-03-02"})
    ) == {failed["mail"]}


@pytest.mark.parametrize(
    "params",
    [
        {"created_at__gte": "yesterday"},
        {"run_at__lt": "2026-13-01"},
        {"finished_at__gte": "2026-03-01", "finished_at__lt": "<script>alert(1)</script>"},
    ],
)
def test_bad_date_input_lists_nothing_and_says_why(timed: dict[str, str], params: Any) -> None:
    page = logged_in(make_operator("olga", "mail")).get(JOBS, params)
    assert page.status_code == 200
    html = page.content.decode()
    assert _listed(page) == set()
    assert "is not a date or a time" in html and "No job is listed until it is" in html
    assert "<script>alert(1)</script>" not in html  # shown back, escaped


def test_the_range_form_keeps_the_list_s_other_filters(timed: dict[str, str]) -> None:
    html = (
        logged_in(make_operator("olga", "mail"))
        .get(JOBS, {"state__exact": "waiting", "created_at__gte": "2026-03-01"})
        .content.decode()
    )
    form = re.search(
        r'<form method="get" class="date-range" id="range-run_at__gte">.*?</form>', html, re.S
    )
    assert form and 'name="state__exact" value="waiting"' in form[0]
    assert 'name="created_at__gte" value="2026-03-01"' in form[0]


def test_the_id_column_stays_on_one_line(failed: dict[str, str]) -> None:
    html = logged_in(make_superuser()).get(JOBS).content.decode()
    assert re.search(r"#result_list \.field-id[^{]*\{[^}]*white-space: nowrap", html)


def test_a_range_of_failure_times_lists_the_jobs_that_failed_then_even_once_retried(
    failed: dict[str, str],
) -> None:
    failed_at = Job.objects.get(id=failed["mail"]).failed_at
    assert failed_at is not None
    services.job_retry(job_id=uuid.UUID(failed["mail"]), actor=SETUP, reason="try again")
    retried = Job.objects.get(id=failed["mail"])
    assert retried.state == "waiting" and retried.failed_at == failed_at
    window = {
        "failed_at__gte": (failed_at - timedelta(seconds=1)).isoformat(),
        "failed_at__lt": (failed_at + timedelta(seconds=1)).isoformat(),
    }
    page = _rita().get(JOBS, window)
    mail = _cells(page, failed["mail"])
    assert mail["failed_at"] == f"{failed_at:%Y-%m-%d %H:%M:%S}"
    assert mail["error"] == "SMTP 550 refused"  # the failed list's columns
