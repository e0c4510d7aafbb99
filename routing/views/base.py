"""Who is looking: staff see every tenant; a tenant user (``TenantMembership``) sees only their tenant.

Every page is wrapped in :func:`dashboard_page`: anonymous visitors go to the login page, signed-in
users linked to no tenant (and not staff) get a 403 page saying so, and the view receives a
:class:`Viewer` that the selectors are scoped by.

Staff read every tenant's data, so a page asks them for the Django model permissions the API asks
for the same data (``PAGE_PERMISSIONS``): being staff alone opens nothing. A tenant user needs none:
they see their own tenant only.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.shortcuts import render

from routing.models import Tenant
from routing.selectors.tenancy import tenant_by_name, tenant_names, tenant_of_user

# What staff need to open each page: the permissions of the API that serves the same data
# (decisions and usage: routing.view_decision, as /api/v1/route/{id} and /api/v1/usage ask).
PAGE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "overview": ("routing.view_decision",),
    "router": ("routing.view_routingstate",),
    "llms": ("registry.view_llm",),
    "evaluations": ("evaluation.view_evaluationrun",),
    "decisions": ("routing.view_decision",),
    "try": ("routing.view_routingstate",),
    "shadow": ("routing.view_shadowevaluation",),
}
# Parts of a page that show more than the page's own permission covers.
SECTION_PERMISSIONS: dict[str, str] = {
    "usage": "routing.view_decision",  # requests and spend, on the LLM pages
    "budgets": "routing.view_budgetperiod",  # tenants' budgets and their pace, on the overview
    "jobs": "routing.view_job",  # an LLM's profiling jobs
    "evidence": "routing.view_evidenceapplication",  # what taught the router an LLM's estimate, from whom
    "tenants": "routing.view_tenant",  # trying prompts as a named tenant
    "shadow_budgets": "routing.view_shadowbudget",  # what the shadow budgets hold and spent
}


@dataclass(frozen=True)
class Viewer:
    user: object
    is_staff: bool
    tenant: Tenant | None  # a tenant user's own tenant; None for staff (who may look at any)

    def scope(self, request) -> Tenant | None:
        """The tenant the page is about: the user's own, or for staff the ``?tenant=`` chosen (None: all)."""
        if not self.is_staff:
            return self.tenant
        name = request.GET.get("tenant")
        return tenant_by_name(name=name) if name else None

    def may_see(self, section: str) -> bool:
        """Whether a section of a page (``SECTION_PERMISSIONS``) is shown: to a tenant user always (it
        is their own tenant's), to staff with its permission."""
        return not self.is_staff or self.user.has_perm(SECTION_PERMISSIONS[section])

    def pages(self) -> frozenset[str]:
        """The pages this viewer may open (the navigation shows these)."""
        if not self.is_staff:
            return frozenset(page for page in PAGE_PERMISSIONS if page != "evaluations")
        return frozenset(page for page, perms in PAGE_PERMISSIONS.items() if self.user.has_perms(perms))


def viewer_of(request, page: str | None = None) -> Viewer | None:
    """Staff holding ``page``'s permissions, else the user's tenant, else None.

    A staff user who is also a tenant user and lacks a page's permissions sees it as a tenant user."""
    user = request.user
    if user.is_staff and user.is_active and (page is None or user.has_perms(PAGE_PERMISSIONS[page])):
        return Viewer(user=user, is_staff=True, tenant=None)
    tenant = tenant_of_user(user=user)
    return Viewer(user=user, is_staff=False, tenant=tenant) if tenant is not None else None


def forbidden(request, message: str):
    viewer = viewer_of(request)
    context = {"message": message, "viewer": viewer, "pages": viewer.pages() if viewer else frozenset()}
    return render(request, "dashboard/forbidden.html", context, status=403)


def dashboard_page(page: str, *, staff_only: bool = False):
    """Login first; then staff with ``page``'s permissions, or a user linked to a tenant (``staff_only``:
    staff alone)."""

    def decorate(view):
        @functools.wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)
            viewer = viewer_of(request, page)
            if viewer is not None and staff_only and not viewer.is_staff:
                viewer = None
            if viewer is None:
                return forbidden(request, _refusal(request.user, page, staff_only=staff_only))
            request.viewer = viewer
            return view(request, *args, **kwargs)

        return wrapped

    return decorate


def _refusal(user, page: str, *, staff_only: bool) -> str:
    if user.is_staff and user.is_active:
        missing = [perm for perm in PAGE_PERMISSIONS[page] if not user.has_perm(perm)]
        return (
            f"Your staff account lacks the permission(s) this page needs: {', '.join(missing)}. "
            "An administrator can grant them under Authentication and Authorization › Users or Groups."
        )
    if staff_only:
        return "This page is for staff: it shows every tenant's data."
    return (
        f"The account {user.get_username()!r} is not linked to a tenant. "
        "An administrator can link it under Routing › Tenant users."
    )


def base_context(request, *, page: str, title: str, **extra) -> dict:
    viewer: Viewer = request.viewer
    tenants = tenant_names() if viewer.is_staff else []
    return {
        "page": page,
        "title": title,
        "viewer": viewer,
        "pages": viewer.pages(),
        "tenant_names": tenants,
        "scope": viewer.scope(request),
        **extra,
    }
