"""Who is looking: staff see every tenant; a tenant user (``TenantMembership``) sees only their tenant.

Every page is wrapped in :func:`dashboard_page`: anonymous visitors go to the login page, signed-in
users linked to no tenant (and not staff) get a 403 page saying so, and the view receives a
:class:`Viewer` that the selectors are scoped by.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.shortcuts import render

from routing.models import Tenant
from routing.selectors.tenancy import tenant_of_user


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
        return Tenant.objects.filter(name=name).first() if name else None


def viewer_of(request) -> Viewer | None:
    user = request.user
    if user.is_staff and user.is_active:
        return Viewer(user=user, is_staff=True, tenant=None)
    tenant = tenant_of_user(user=user)
    return Viewer(user=user, is_staff=False, tenant=tenant) if tenant is not None else None


def forbidden(request, message: str):
    return render(request, "dashboard/forbidden.html", {"message": message}, status=403)


def dashboard_page(view=None, *, staff_only: bool = False):
    """Login first; then staff, or a user linked to a tenant (``staff_only``: staff alone)."""

    def decorate(view):
        @functools.wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)
            viewer = viewer_of(request)
            if viewer is None:
                return forbidden(
                    request,
                    f"The account {request.user.get_username()!r} is not linked to a tenant. "
                    "An administrator can link it under Routing › Tenant users.",
                )
            if staff_only and not viewer.is_staff:
                return forbidden(request, "This page is for staff: it shows every tenant's data.")
            request.viewer = viewer
            return view(request, *args, **kwargs)

        return wrapped

    return decorate(view) if view is not None else decorate


def base_context(request, *, page: str, title: str, **extra) -> dict:
    viewer: Viewer = request.viewer
    tenants = list(Tenant.objects.order_by("name").values_list("name", flat=True)) if viewer.is_staff else []
    return {
        "page": page,
        "title": title,
        "viewer": viewer,
        "tenant_names": tenants,
        "scope": viewer.scope(request),
        **extra,
    }
