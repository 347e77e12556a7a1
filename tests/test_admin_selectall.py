""" "Select all N" on the job list (issue 22) acts on exactly the N jobs the list
counted: not a job pushed after the page loaded, nor one pushed after the confirmation
page; past the list's count cap it says it acts on every matching job and the
confirmation page gives the true count. A selection carried by the confirmation page
is read, never trusted: only jobs the list's filters and the user's rights still reach
are acted on."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from queues.admin.joblist import BoundedCountPaginator
from queues.admin.jobs import JobAdmin
from queues.models import Job, JobState

from .personas import logged_in, make_operator
from .support import job_in

pytestmark = pytest.mark.django_db
JOBS = "/admin/queues/job/"
FAILED = f"{JOBS}?state__exact=failed"


def _failed(queue: str = "mail") -> str:
    return str(job_in(queue, state=JobState.FAILED, attempts=3, finished_at=timezone.now()).id)


@pytest.fixture
def page_of_two(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(JobAdmin, "list_per_page", 2)


def _hidden(html: str, name: str) -> str:
    found = re.search(rf'<input type="hidden" name="{name}" value="([^"]*)"', html)
    assert found, f"no {name} in the page"
    return found[1]


def _select_all(client: Client, action: str = "retry_jobs") -> tuple[Any, dict[str, Any]]:
    """Load the failed list, select every row of its first page, then "select all",
    and ask for ``action``: the confirmation page, and the form it posts back."""
    listing = client.get(FAILED).content.decode()
    on_page = re.findall(r'name="_selected_action" value="([^"]+)"', listing)
    post = {
        "action": action,
        "index": "0",
        "select_across": "1",
        "_selected_action": on_page,
        "listed_at": _hidden(listing, "listed_at"),
        "listed_count": _hidden(listing, "listed_count"),
    }
    return client.post(FAILED, post), post


def _confirm(client: Client, html: str, reason: str = "INC-9") -> Any:
    """Post the confirmation page ``html``'s form back, with a reason."""
    form = html[html.index('id="confirm-form"') :]
    fields: dict[str, Any] = {
        "_selected_action": re.findall(r'name="_selected_action" value="([^"]+)"', form)
    }
    for name in ("select_across", "action", "confirm", "listed_at", "selection"):
        found = re.search(rf'name="{name}" value="([^"]*)"', form)
        if found:
            fields[name] = found[1]
    return client.post(FAILED, {**fields, "reason": reason})


def test_select_all_acts_on_the_n_listed_not_on_jobs_pushed_later(page_of_two: None) -> None:
    listed = {_failed() for _ in range(3)}
    client = logged_in(make_operator("olga", "mail"))
    assert "Select all 3 jobs" in client.get(FAILED).content.decode()
    # Loaded; then a job fails that the list never showed.
    listing = client.get(FAILED).content.decode()
    late = _failed()
    on_page = re.findall(r'name="_selected_action" value="([^"]+)"', listing)
    asked = client.post(
        FAILED,
        {
            "action": "retry_jobs",
            "index": "0",
            "select_across": "1",
            "_selected_action": on_page,
            "listed_at": _hidden(listing, "listed_at"),
            "listed_count": _hidden(listing, "listed_count"),
        },
    )
    html = asked.content.decode()
    assert "Retry 3 job(s)?" in html and late not in html
    assert sorted(_hidden(html, "selection").split(",")) == sorted(
        uuid.UUID(job).hex for job in listed
    )
    later = _failed()  # after the confirmation page too
    done = _confirm(client, asked.content.decode())
    assert done.status_code == 302
    states = dict(Job.objects.values_list("id", "state"))
    assert {str(job) for job, state in states.items() if state == JobState.WAITING} == listed
    assert states[uuid.UUID(late)] == states[uuid.UUID(later)] == JobState.FAILED


def test_a_listed_job_that_left_the_filter_is_left_alone_and_the_page_says_so(
    page_of_two: None,
) -> None:
    jobs = [_failed() for _ in range(3)]
    client = logged_in(make_operator("olga", "mail"))
    listing = client.get(FAILED).content.decode()
    Job.objects.filter(id=jobs[0]).update(state=JobState.ACTIVE)  # a worker took it meanwhile
    asked = client.post(
        FAILED,
        {
            "action": "cancel_jobs",
            "index": "0",
            "select_across": "1",
            "_selected_action": re.findall(r'name="_selected_action" value="([^"]+)"', listing),
            "listed_at": _hidden(listing, "listed_at"),
            "listed_count": _hidden(listing, "listed_count"),
        },
    )
    html = asked.content.decode()
    assert "Cancel 2 job(s)?" in html
    assert "The list showed 3 job(s) when it was loaded; 2 job(s) created by then" in html
    _confirm(client, asked.content.decode())
    assert Job.objects.get(id=jobs[0]).state == JobState.ACTIVE


def test_past_the_cap_it_says_every_matching_job_and_gives_the_true_count(
    page_of_two: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(BoundedCountPaginator, "COUNT_CAP", 3)
    listed = {_failed() for _ in range(5)}
    client = logged_in(make_operator("olga", "mail"))
    listing = client.get(FAILED).content.decode()
    assert "Select every matching job (more than 3)" in listing
    assert "Select all 3" not in listing
    assert re.search(r"more than 3 jobs\s", listing)  # the paginator says so too
    asked, _ = _select_all(client)
    html = asked.content.decode()
    assert "Retry 5 job(s)?" in html and "every job matching the list" in html
    assert 'name="selection"' not in html  # not carried past the cap: acted on by filter
    late = _failed()
    _confirm(client, asked.content.decode())
    assert {
        str(job) for job in Job.objects.filter(state=JobState.WAITING).values_list("id", flat=True)
    } == listed
    assert Job.objects.get(id=late).state == JobState.FAILED


def test_a_carried_selection_reaches_no_job_outside_the_user_s_queues(page_of_two: None) -> None:
    mine = [_failed() for _ in range(3)]
    theirs = _failed("billing")
    client = logged_in(make_operator("olga", "mail"))
    asked, _ = _select_all(client)
    html = asked.content.decode()
    forged = html.replace(
        _hidden(html, "selection"), ",".join(uuid.UUID(job).hex for job in [*mine, theirs])
    )
    done = _confirm(client, forged)
    assert done.status_code == 302
    assert Job.objects.get(id=theirs).state == JobState.FAILED
    assert set(Job.objects.filter(id__in=mine).values_list("state", flat=True)) == {"waiting"}


@pytest.mark.parametrize(
    ("field", "value"), [("selection", "not-an-id"), ("listed_at", "when I looked")]
)
def test_an_unreadable_selection_does_nothing(page_of_two: None, field: str, value: str) -> None:
    jobs = [_failed() for _ in range(3)]
    client = logged_in(make_operator("olga", "mail"))
    asked, _ = _select_all(client)
    html = asked.content.decode()
    original = _hidden(html, field)
    forged = html.replace(f'name="{field}" value="{original}"', f'name="{field}" value="{value}"')
    done = _confirm(client, forged)
    assert done.status_code == 302
    assert set(Job.objects.filter(id__in=jobs).values_list("state", flat=True)) == {"failed"}
    followed = client.get(done["Location"]).content.decode()
    assert "Nothing was done" in followed
