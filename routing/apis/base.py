"""What every API view shares: who may call it, and the error answers its schema documents."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse
from rest_framework import permissions
from rest_framework.authentication import BasicAuthentication, SessionAuthentication
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


class IsTenantOrStaff(permissions.BasePermission):
    def has_permission(self, request, view):
        return tenant_of(request) is not None or bool(request.user and request.user.is_staff)


class ApiBase(APIView):
    # Tenants use their API key; staff (admin users) their session or HTTP Basic.
    authentication_classes = [ApiKeyAuthentication, SessionAuthentication, BasicAuthentication]
    permission_classes = [IsTenantOrStaff]


class StaffApi(APIView):
    # A tenant's API key is recognised (and refused with 403) rather than answered with a login prompt.
    authentication_classes = [ApiKeyAuthentication, SessionAuthentication, BasicAuthentication]
    permission_classes = [permissions.IsAdminUser]
