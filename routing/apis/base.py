"""What every API view shares: who may call it, and the error answers its schema documents."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse
from rest_framework import permissions
from rest_framework.authentication import SessionAuthentication
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from routing.apis.authentication import ApiKeyAuthentication, tenant_of
from routing.apis.serializers import ErrorSerializer


def errors(*codes: int) -> dict:
    described = {
        400: "Invalid input; `error.fields` names each bad field.",
        401: "Missing, unknown or revoked API key.",
        402: "The tenant's budget for this period is spent (policy 'reject'); `error.budget` says when it resets.",
        403: "Not allowed for this caller.",
        404: "No such decision for this tenant.",
        503: "No routing state has been fitted yet.",
    }
    return {code: OpenApiResponse(ErrorSerializer, description=described[code]) for code in codes}


class IsTenant(permissions.BasePermission):
    message = "Routing needs a tenant API key (Authorization: Bearer rh_…)."

    def has_permission(self, request, view):
        return tenant_of(request) is not None


class HasStaffPermissions(permissions.BasePermission):
    """A staff user holding the Django model permissions the view declares for the request's method.

    ``view.staff_permissions`` maps an HTTP method to the permissions it needs, e.g.
    ``{"GET": ("routing.view_job",), "POST": ("routing.add_job",)}``; HEAD and OPTIONS need what GET
    needs, and a method the view does not list is refused. Being staff alone is not enough: a
    view-only staff user (the admin's "view" permissions) reads, and cannot register, queue or change.
    """

    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated and getattr(user, "is_staff", False) and user.is_active):
            return False
        required = staff_permissions_of(view, request.method)
        if required is None:
            self.message = f"{request.method} is not open to staff users here."
            return False
        missing = [perm for perm in required if not user.has_perm(perm)]
        if missing:
            self.message = f"Your staff account lacks the permission(s): {', '.join(missing)}."
            return False
        return True


def staff_permissions_of(view, method: str) -> tuple[str, ...] | None:
    declared = getattr(view, "staff_permissions", {})
    if method in ("HEAD", "OPTIONS"):
        method = "GET"
    return declared.get(method)


class IsTenantOrStaff(HasStaffPermissions):
    message = "Needs a tenant API key, or a staff login with the required permissions."

    def has_permission(self, request, view):
        return tenant_of(request) is not None or super().has_permission(request, view)


class JsonNegotiation(DefaultContentNegotiation):
    """JSON whatever the Accept header asks for: the API has one format, and a client that sends
    ``Accept: text/html`` still gets its answer (or its error) rather than a 406."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class JsonApiView(APIView):
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JsonNegotiation


class ApiBase(JsonApiView):
    # Tenants use their API key; staff (admin users) their session. No HTTP Basic: it would let anyone
    # make the web workers hash passwords (PBKDF2) on demand.
    authentication_classes = [ApiKeyAuthentication, SessionAuthentication]
    permission_classes = [IsTenantOrStaff]
    staff_permissions: dict[str, tuple[str, ...]] = {}


class StaffApi(JsonApiView):
    # A tenant's API key is recognised (and refused with 403) rather than answered with a login prompt.
    authentication_classes = [ApiKeyAuthentication, SessionAuthentication]
    permission_classes = [HasStaffPermissions]
    staff_permissions: dict[str, tuple[str, ...]] = {}
