"""The shadow evaluation page: win / tie / loss with a Wilson interval, cost saved and the worst losses,
per tenant — staff see every tenant, a tenant user their own."""

import re

import pytest

from routing.intervals import wilson
from tests.fixtures.dashboard import login, shadow_evaluations, staff_user

pytestmark = pytest.mark.django_db


def cells(html: str, table_id: str) -> list[list[str]]:
    table = re.search(rf'<table[^>]*id="{table_id}".*?</table>', html, re.S).group(0)
    rows = re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1], re.S)
    return [
        [re.sub(r"<[^>]+>|\s+", " ", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in rows
    ]


def test_wilson_interval_matches_the_published_values():
    low, high = wilson(8, 10)  # Brown, Cai & DasGupta (2001), Table: 0.490 – 0.943
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)
    assert wilson(0, 5)[0] == 0.0 and round(wilson(0, 5)[1], 3) == 0.434
    assert wilson(0, 0) is None


def test_the_page_shows_each_tenants_verdicts_interval_and_savings(site):
    shadow_evaluations(site)
    html = site.clients["staff"].get("/shadow/").content.decode()
    [alpha] = cells(html, "shadow-figures")  # beta has no shadow evaluation
    # tenant, judged, wins, ties, losses, as good or better, interval, comparison, routed, saved, shadow spend, …
    assert alpha[:11] == [
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
        "$0.0330",
    ]
    assert "global (every tenant without its own)" in html and "$4.97" in html  # the shadow budget, left
    assert "Choose a tenant to see the prompts where routing lost most." in html


def test_a_tenant_user_sees_its_losses_worst_first_and_no_other_tenant(site):
    rows = shadow_evaluations(site)
    html = site.clients["a"].get("/shadow/").content.decode()
    losses = cells(html, "shadow-losses")
    assert [loss[3] for loss in losses] == ["routed answer 5", "routed answer 4"]  # score 0 before 0.25
    assert [loss[6] for loss in losses] == ["0.000", "0.250"]
    prompt = " ".join(rows[5].request["messages"][0]["content"].split())
    assert losses[0][1].rstrip("…") == prompt[: len(losses[0][1]) - 1] and len(losses[0][1]) > 100
    assert "Shadow budgets" not in html  # staff's money, not the tenant's
    other = site.clients["b"].get("/shadow/?tenant=alpha").content.decode()
    assert "No shadow evaluations in this period." in other and "routed answer 0" not in other


def test_losses_keep_no_text_for_a_tenant_that_does_not_log_it(site):
    shadow_evaluations(site)
    site.tenant_a.log_gateway_text = False
    site.tenant_a.save(update_fields=["log_gateway_text"])
    html = site.clients["a"].get("/shadow/").content.decode()
    assert "does not log its gateway text" in html and "routed answer 0" not in html
    assert cells(html, "shadow-figures")[0][:5] == ["alpha", "6", "2", "2", "2"]


def test_a_period_without_evaluations_and_a_bad_date_are_pages_not_errors(site):
    shadow_evaluations(site)
    empty = site.clients["staff"].get("/shadow/?since=2020-01-01&until=2020-01-31").content.decode()
    assert "No shadow evaluations in this period." in empty
    bad = site.clients["staff"].get("/shadow/?since=2020-02-01&until=2020-01-01")
    assert bad.status_code == 200 and "Must not be after" in bad.content.decode()
    client = login(staff_user("budgets-hidden", "view_shadowevaluation"))
    assert "Shadow budgets" not in client.get("/shadow/").content.decode()
