"""The dashboard in a real browser: headless Chromium loads every page of a live server.

Each page must load without a console error and draw every chart (an SVG with data marks in it);
on "Try it", moving the λ slider must change the ranking. A screenshot of each page at 1,400 × 900
is written to ``SCREENSHOTS`` (git-ignored) for a person to look at.

Chromium comes from the system (Debian's ``chromium`` package; ``make test`` installs it when it runs
as root), driven by the ``playwright`` package through ``executable_path``: no browser is downloaded.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.fixtures.api import ApiClient
from tests.fixtures.dashboard import GRADER, dashboard_pages, evaluation_run, evidence_taken_in, shadow_evaluations

SCREENSHOTS = Path(os.environ.get("ROUTERHUB_SCREENSHOTS", Path(__file__).parent / "screenshots"))
CHROMIUM = os.environ.get("ROUTERHUB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
VIEWPORT = {"width": 1400, "height": 900}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"no Chromium binary at {CHROMIUM}: install Debian's `chromium` package (apt-get install -y chromium)",
    ),
]

# Drawn data in a chart: lines and points (.series), heatmap cells (.cell).
CHART_MARKS = """() => Array.from(document.querySelectorAll('figure.chart svg')).map(svg => {
    const box = svg.getBoundingClientRect();
    return {title: svg.getAttribute('aria-label'), width: box.width, height: box.height,
            marks: svg.querySelectorAll('.series, .cell').length};
})"""


@pytest.fixture
def browser_site(site, make_tenant, transactional_db, live_server, monkeypatch):
    """The dashboard fixture's tenants and users, committed for the live server, plus a refused request,
    an evaluation run, tenant alpha's shadow evaluations and evidence taken in for the LLM of its first
    decision, so that every page has something to show."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    # Playwright's sync API runs an event loop in this thread; Django refuses ORM calls while one
    # runs unless told that this thread only waits on the browser (the server has its own thread).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    _, tiny_key = make_tenant(name="tiny", budget_usd="0.000001")
    assert ApiClient(tiny_key).route("What is 2 + 2?").status_code == 402
    run = evaluation_run(prompt_set_id=site.tenant_a.decisions.first().state.prompt_set_id)
    shadow_evaluations(site)
    llm = evidence_taken_in(site)
    pages = dashboard_pages(site, llm_id=llm.id, run=run)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser, live_server.url, pages
        finally:
            browser.close()


def open_session(browser, base_url: str, username: str):
    """A page logged in through the login form, collecting console errors and uncaught exceptions."""
    page = browser.new_page(viewport=VIEWPORT)
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(base_url + "/")
    assert page.url.startswith(base_url + "/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "pw-123456")
    page.click("form.login button[type=submit]")
    page.wait_for_url(base_url + "/")
    return page, errors


def test_every_page_loads_without_errors_and_draws_its_charts(browser_site):
    browser, base_url, pages = browser_site
    page, errors = open_session(browser, base_url, "staffer")
    for name, path in pages.items():
        response = page.goto(base_url + path)
        assert response.status == 200, (path, response.status)
        charts = page.evaluate(CHART_MARKS)
        empty = [c["title"] for c in charts if not (c["width"] > 0 and c["height"] > 0 and c["marks"] > 0)]
        assert not empty, f"{path}: charts without data marks: {empty}"
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
        assert errors == [], f"{path}: {errors}"
    page.goto(base_url + "/")
    assert len(page.evaluate(CHART_MARKS)) == 5 + 3  # four figures, refusals, a budget chart per tenant (3)


def test_a_tenant_user_sees_their_own_overview(browser_site):
    browser, base_url, _ = browser_site
    page, errors = open_session(browser, base_url, "viewer-a")
    assert "tenant alpha" in page.inner_text("header")
    assert "Tenant alpha" in page.inner_text("main p.lead") and "beta" not in page.inner_text("main")
    page.screenshot(path=str(SCREENSHOTS / "overview_tenant_user.png"), full_page=True)
    assert errors == []


def test_the_shadow_page_shows_a_tenants_verdicts_and_where_routing_lost(browser_site):
    browser, base_url, pages = browser_site
    page, errors = open_session(browser, base_url, "viewer-a")
    page.goto(base_url + pages["shadow"])
    figures = page.locator("#shadow-figures tbody tr td").all_inner_texts()
    # alpha: 6 judged, 2 wins, 2 ties, 2 losses; as good or better 66.7% (Wilson 30.0% – 90.3%); saved $0.0220
    assert figures[:10] == [
        "alpha",
        "6",
        "2",
        "2",
        "2",
        "66.7%",
        "30.0% – 90.3%",
        "$0.0300",
        "$0.00800",
        "$0.0220 (73.3%)",
    ]
    assert page.locator("#shadow-losses tbody tr").count() == 2
    page.screenshot(path=str(SCREENSHOTS / "shadow_tenant_user.png"), full_page=True)
    assert errors == []


def test_an_llm_page_shows_the_evidence_its_profile_took_in_and_from_whom(browser_site):
    browser, base_url, pages = browser_site
    page, errors = open_session(browser, base_url, "staffer")
    page.goto(base_url + pages["llm"])
    assert page.locator("h2#evidence").is_visible()
    assert re.match(r"Its profile on v\d+ takes in \d+ evidence events weighing", page.inner_text("#evidence-summary"))
    sources = page.locator("#evidence-sources tbody tr td:nth-child(1)").all_inner_texts()
    assert sorted(sources) == sorted(["feedback", GRADER])
    applications = page.locator("#evidence-applications tbody tr")
    assert applications.count() == 2
    assert "→" in applications.nth(0).locator("td:nth-child(6)").inner_text()
    assert page.locator("#evidence-moved tbody tr").count() > 0
    page.screenshot(path=str(SCREENSHOTS / "llm_evidence.png"), full_page=True)
    assert errors == []


def test_moving_the_lambda_slider_changes_the_ranking(browser_site):
    browser, base_url, pages = browser_site
    page, errors = open_session(browser, base_url, "staffer")
    page.goto(base_url + pages["try"])
    page.fill("#prompt", "Which of these compounds is an acid? A. NaOH B. HCl C. NH3 D. KOH")
    page.click("form.try button[type=submit]")
    ranking = lambda: page.locator("#ranking tbody tr td:nth-child(2)").all_inner_texts()  # noqa: E731
    by_quality, chosen = ranking(), page.inner_text("#chosen")
    assert chosen == by_quality[0]

    page.locator("#lambda-slider").evaluate("el => { el.value = 100; el.dispatchEvent(new Event('input')); }")
    page.wait_for_function("expected => document.getElementById('chosen').textContent !== expected", arg=chosen)
    by_price = ranking()
    assert by_price != by_quality and page.inner_text("#chosen") == by_price[0]
    costs = page.locator("#ranking tbody tr td:nth-child(4)").all_inner_texts()
    assert float(costs[0].lstrip("$")) == min(float(c.lstrip("$")) for c in costs)  # price decides now
    assert float(page.input_value("#lambda")) > 0
    page.screenshot(path=str(SCREENSHOTS / "try_slider_moved.png"), full_page=True)

    page.locator("#lambda-slider").evaluate("el => { el.value = 0; el.dispatchEvent(new Event('input')); }")
    page.wait_for_function("expected => document.getElementById('chosen').textContent === expected", arg=chosen)
    assert ranking() == by_quality
    assert errors == []
