"""An LLM's page shows staff the evidence its profile took in on the active state: how much, from whom,
after the bounded rule, and how each application moved its estimate."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils.timezone import localtime

from registry.models import LLM
from routing.models import Decision, EvidenceApplication, RoutingState, Tenant
from routing.views.formatting import quality
from tests.fixtures.dashboard import GRADER, evidence_taken_in, login, staff_user
from tests.routing.views.test_pages import text_of

pytestmark = pytest.mark.django_db


def evidence_section(html: str) -> str:
    """The page's Evidence section, tags stripped to what a person reads."""
    section = html.split('<h2 id="evidence">', 1)[1].split("<h2", 1)[0]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", section)).strip()


def rows(html: str, table_id: str) -> list[list[str]]:
    """The cells of a table's body, each stripped to its text."""
    body = html.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0].split("<tbody>", 1)[1]
    return [
        [
            re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", cell)).strip()
            for cell in re.findall(r"<td.*?>(.*?)</td>", row, re.S)
        ]
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)
    ]


def test_the_llm_page_shows_the_evidence_taken_in_from_whom_and_how_it_moved_the_estimate(site, settings):
    settings.ROUTERHUB_EVIDENCE_CAP_PROMPTS = 0.75  # below one fresh event: every source is scaled down
    llm = evidence_taken_in(site)
    judged = Decision.objects.filter(id__in=site.decisions_a, llm=llm).count()
    state = RoutingState.objects.get(is_active=True)
    latest, first = EvidenceApplication.objects.filter(state=state, llm=llm).order_by("-created_at", "-id")
    html = text_of(site.clients["staff"].get(f"/llms/{llm.id}/"))
    shown = evidence_section(html)

    # How much evidence, after one-per-prompt, decay and the cap: both sources weigh the cap, 1.5 in all.
    assert (latest.events, round(latest.weight, 6)) == (2 * judged, 1.5)
    assert f"Its profile on v{state.version} takes in {2 * judged} evidence events weighing 1.5 prompts' worth" in shown
    assert "halved every 14 days, at most 0.75 prompts' worth per source" in shown
    assert f"moved {quality(latest.error_before)} → {quality(latest.error_after)}" in shown
    assert sorted(rows(html, "evidence-sources")) == sorted(
        [
            ["feedback", "alpha", str(judged), "0.75", "scaled down to the cap"],
            [GRADER, "—", str(judged), "0.75", "scaled down to the cap"],
        ]
    )
    # The latest applications, newest first: when, why, from whom, and the estimate before → after.
    applications = rows(html, "evidence-applications")
    assert [row[0] for row in applications] == [
        localtime(a.created_at).strftime("%Y-%m-%d %H:%M:%S") for a in (latest, first)
    ]
    assert applications[1][1:5] == [
        "new evidence",
        str(judged),
        "0.75",
        f"feedback (alpha): {judged} events, weight 0.75, scaled down to the cap",
    ]
    assert applications[1][5] == f"{quality(first.error_before)} → {quality(first.error_after)}"
    assert f'href="/admin/routing/evidenceapplication/{latest.id}/change/"' in html
    # The newest events themselves: prompt, cluster, whose word, and the estimate there.
    moved = rows(html, "evidence-moved")
    assert len(moved) == min(2 * judged, 10)
    assert {row[2] for row in moved} == {"feedback (alpha)", GRADER}
    assert {row[3] for row in moved} == {"0", "1"}
    assert moved[0][5] == f"{quality(latest.moved[0]['before'])} → {quality(latest.moved[0]['after'])}"
    assert "changed since it was last applied" not in shown and "do not count here" not in shown


def test_evidence_no_longer_counted_is_said_to_wait_for_the_next_run(site):
    llm = evidence_taken_in(site)
    judged = Decision.objects.filter(id__in=site.decisions_a, llm=llm).count()
    Tenant.objects.filter(id=site.tenant_a.id).update(trusted_for_learning=False)  # staff withdrew the trust

    shown = evidence_section(text_of(site.clients["staff"].get(f"/llms/{llm.id}/")))

    assert f"Its counted evidence ({judged} judgement{'s' if judged > 1 else ''}) changed since it was last" in shown
    assert f"{judged} more judgement" in shown and "not count here: from a tenant not trusted for learning" in shown


def test_an_llm_without_evidence_says_so_and_tenants_never_see_the_section(site):
    llm = evidence_taken_in(site)
    other = LLM.objects.filter(profiles__state__is_active=True).exclude(id=llm.id).order_by("name").first()
    state = RoutingState.objects.get(is_active=True)

    empty = evidence_section(text_of(site.clients["staff"].get(f"/llms/{other.id}/")))
    assert empty == (
        f"Evidence No evidence has been applied to {other.name} on the active state v{state.version}: no trusted "
        "tenant's quality feedback or grader's verdict on its answers has been taken in."
    )
    # It names the tenants the evidence came from: an audit for staff holding its permission only.
    assert 'id="evidence"' not in text_of(site.clients["a"].get(f"/llms/{llm.id}/"))
    no_audit = login(staff_user("no-audit", "view_llm"))
    assert 'id="evidence"' not in text_of(no_audit.get(f"/llms/{llm.id}/"))


def test_the_llm_page_reads_its_evidence_in_a_fixed_number_of_queries(site, django_assert_max_num_queries):
    llm = evidence_taken_in(site)
    staff, page = site.clients["staff"], f"/llms/{llm.id}/"
    staff.get(page)  # the router and its figures are cached per process after a first load

    with CaptureQueriesContext(connection) as two:
        text_of(staff.get(page))
    latest = EvidenceApplication.objects.filter(llm=llm).order_by("-created_at", "-id").first()
    for _ in range(8):  # more applications, each with its sources and events, as an audit accumulates
        latest.pk = None
        latest.save()
    with django_assert_max_num_queries(len(two)):
        html = text_of(staff.get(page))
    assert len(rows(html, "evidence-applications")) == 10
