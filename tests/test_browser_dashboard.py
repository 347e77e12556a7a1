"""The dashboard as people look at it (Playwright driving Debian's chromium): its own
full-width area that fits a 1400 px screen without headers breaking letter by letter
and scrolls sideways on a 390 px phone without cutting anything off; charts drawn from
the rollup, in light and dark; every count a link to exactly its jobs; a queue's page
that refreshes itself after a push; an interval remembered across reloads, and no
polling while the tab is hidden. Screenshots of each page for each persona that sees
it go to test-artifacts/screenshots/.

Runs with: python3 dev.py test -m browser
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from queues.models import Queue

from .browsers import BROWSER_MARKS, log_in, screenshot
from .dashboards import every_state, pushed
from .personas import OPERATOR_QUEUE, make_auditor, make_operator, make_staff, make_superuser

pytestmark = BROWSER_MARKS

PERSONAS: dict[str, Callable[..., Any]] = {
    "superuser": make_superuser,
    "operator": make_operator,
    "auditor": make_auditor,
}
# A header broken letter by letter is many lines tall; between words, at most three.
MAX_HEADER_PX = 60


def _world() -> dict[str, int]:
    expected = every_state(OPERATOR_QUEUE)
    every_state("mail")
    return expected


def _charts_drawn(page: Any) -> None:
    page.wait_for_function("window.flashqCharts && window.flashqCharts.drawn > 0")
    assert page.locator("#chart-counts canvas").count() == 1
    assert page.locator("#chart-runtime canvas").count() == 1


def _layout(page: Any) -> dict[str, Any]:
    return dict(
        page.evaluate(
            """() => {
              const box = document.getElementById('dashboard-scroll');
              const rect = box.getBoundingClientRect();
              const heads = [...document.querySelectorAll('#dashboard-table th')];
              return {
                viewport: window.innerWidth,
                page: document.documentElement.scrollWidth,
                right: rect.right, left: rect.left,
                scroll: box.scrollWidth, client: box.clientWidth,
                tallest: Math.max(...heads.map(h => h.getBoundingClientRect().height)),
              };
            }"""
        )
    )


@pytest.mark.parametrize("persona", sorted(PERSONAS))
def test_the_dashboard_fits_a_wide_screen_and_scrolls_on_a_phone(
    live_server: Any, browser: Any, persona: str
) -> None:
    _world()
    page = log_in(browser, live_server.url, PERSONAS[persona]())
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(f"{live_server.url}/admin/")
    _charts_drawn(page)
    wide = _layout(page)
    assert wide["scroll"] <= wide["client"], wide  # the whole table, no sideways scroll
    assert wide["tallest"] <= MAX_HEADER_PX, wide  # no header broken letter by letter
    assert wide["right"] <= wide["viewport"] and wide["page"] <= wide["viewport"], wide
    rows = page.locator("#dashboard-rows tr[data-queue]")
    names = sorted(rows.nth(i).get_attribute("data-queue") for i in range(rows.count()))
    assert names == ([OPERATOR_QUEUE] if persona == "operator" else ["jobs:q", "mail"])
    screenshot(page, f"dashboard-{persona}-1400")

    drawn = page.evaluate("window.flashqCharts.drawn")
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_function(f"window.flashqCharts.drawn > {drawn}")  # drawn to fit
    phone = _layout(page)
    # Nothing cut off: the table scrolls inside its box, and the box is on screen.
    assert phone["left"] >= 0 and phone["right"] <= phone["viewport"], phone
    assert phone["page"] <= phone["viewport"], phone
    assert phone["scroll"] > phone["client"], phone
    page.locator("#dashboard-scroll").evaluate("box => { box.scrollLeft = box.scrollWidth; }")
    concurrency = page.locator("#dashboard-table th", has_text="concurrency")
    box = concurrency.bounding_box()
    assert box is not None and box["x"] + box["width"] <= phone["viewport"] + 1
    screenshot(page, f"dashboard-{persona}-390")

    page.set_viewport_size({"width": 1400, "height": 900})
    drawn = page.evaluate("window.flashqCharts.drawn")
    page.evaluate("document.documentElement.dataset.theme = 'dark'")
    page.wait_for_function(f"window.flashqCharts.drawn > {drawn}")  # redrawn in dark colours
    screenshot(page, f"dashboard-{persona}-1400-dark")


def test_staff_without_rights_get_no_dashboard_and_no_charts(
    live_server: Any, browser: Any
) -> None:
    _world()
    page = log_in(browser, live_server.url, make_staff())
    assert page.locator("#dashboard").count() == 0 and page.locator("#charts").count() == 0
    answer = page.request.get(f"{live_server.url}/admin/charts.json")
    assert answer.status == 403
    screenshot(page, "dashboard-staff-without-rights")


def test_each_count_opens_the_job_list_with_exactly_that_many_jobs(
    live_server: Any, browser: Any
) -> None:
    expected = _world()
    page = log_in(browser, live_server.url, make_operator())
    row = page.locator(f"#dashboard-rows tr[data-queue='{OPERATOR_QUEUE}']")
    links = row.locator("a")
    targets = []
    for i in range(links.count()):
        link = links.nth(i)
        cls = link.get_attribute("class") or link.evaluate("a => a.parentElement.className")
        targets.append((cls, int(link.inner_text()), link.get_attribute("href")))
    assert {cls for cls, _, _ in targets} == set(expected)
    for cls, count, href in targets:
        assert count == expected[cls], cls
        page.goto(f"{live_server.url}{href}")
        shown = page.locator("#result_list tbody tr").count()
        assert shown == count, (cls, href)
        if cls == "failed_1h":
            screenshot(page, "dashboard-operator-failed-1h-list")


def test_a_queue_page_refreshes_itself_after_a_push(live_server: Any, browser: Any) -> None:
    _world()
    queue = Queue.objects.get(name=OPERATOR_QUEUE)
    for persona in ("operator", "auditor", "superuser"):
        page = log_in(browser, live_server.url, PERSONAS[persona](persona))
        page.goto(f"{live_server.url}/admin/queues/queue/{queue.pk}/change/")
        _charts_drawn(page)
        waiting = page.locator(f"#dashboard-rows tr[data-queue='{OPERATOR_QUEUE}'] td.waiting")
        before = int(waiting.inner_text())
        pushes = page.evaluate("window.flashqCharts.data.pushed.reduce((a, b) => a + b, 0)")
        page.select_option("#refresh-interval", "2")
        pushed(OPERATOR_QUEUE)
        page.wait_for_function(
            'document.querySelector("#dashboard-rows td.waiting").textContent'
            f" === '{before + 1}'",
            timeout=15_000,
        )
        page.wait_for_function(
            f"window.flashqCharts.data.pushed.reduce((a, b) => a + b, 0) === {pushes + 1}",
            timeout=15_000,
        )
        screenshot(page, f"queue-page-{persona}")
        drawn = page.evaluate("window.flashqCharts.drawn")
        page.set_viewport_size({"width": 390, "height": 844})
        page.wait_for_function(f"window.flashqCharts.drawn > {drawn}")  # drawn to fit
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        screenshot(page, f"queue-page-{persona}-390")
        drawn = page.evaluate("window.flashqCharts.drawn")
        page.evaluate("document.documentElement.dataset.theme = 'dark'")
        page.wait_for_function(f"window.flashqCharts.drawn > {drawn}")
        screenshot(page, f"queue-page-{persona}-390-dark")
        page.close()


def test_the_interval_is_remembered_and_hidden_tabs_do_not_poll(
    live_server: Any, browser: Any
) -> None:
    _world()
    page = log_in(browser, live_server.url, make_operator())
    page.select_option("#refresh-interval", "15")
    page.click("#charts button[data-range='24h']")
    page.wait_for_function("window.flashqCharts.data && window.flashqCharts.data.step === 300")
    page.reload()
    assert page.locator("#refresh-interval").input_value() == "15"
    page.wait_for_function("window.flashqCharts.data && window.flashqCharts.data.step === 300")
    queue = Queue.objects.get(name=OPERATOR_QUEUE)
    page.goto(f"{live_server.url}/admin/queues/queue/{queue.pk}/change/")
    assert page.locator("#refresh-interval").input_value() == "15"  # across pages too

    # Polling every 2 s, the event stream down: hidden, nothing is fetched.
    page.select_option("#refresh-interval", "2")
    page.evaluate(
        """() => {
          Object.defineProperty(document, 'hidden', {value: true, configurable: true});
          document.dispatchEvent(new Event('visibilitychange'));
        }"""
    )
    page.wait_for_timeout(1_000)  # a fetch already on its way may still land
    before = page.evaluate("window.flashqLive.refreshes")
    pushed(OPERATOR_QUEUE)
    page.wait_for_timeout(5_000)
    assert page.evaluate("window.flashqLive.refreshes") == before
    page.evaluate(
        """() => {
          Object.defineProperty(document, 'hidden', {value: false, configurable: true});
          document.dispatchEvent(new Event('visibilitychange'));
        }"""
    )
    page.wait_for_function(f"window.flashqLive.refreshes > {before}", timeout=10_000)
