"""The one place where exceptions become JSON errors (settings ``REST_FRAMEWORK["EXCEPTION_HANDLER"]``).

Every error answer has the same shape::

    {"error": {"code": "invalid", "message": "…", "fields": {"prompt": ["This field is required."]}}}

``fields`` appears for input errors only; a spent budget (402) adds ``budget``.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from routing.apis.serializers import BudgetStatusSerializer
from routing.exceptions import DecisionNotFound, InvalidRouteRequest, NoActiveRoutingState
from routing.services.budget_policies import BudgetExhausted


def error_body(code: str, message: str, **extra) -> dict:
    return {"error": {"code": code, "message": message, **extra}}


def exception_handler(exc, context):
    if isinstance(exc, NoActiveRoutingState):
        return Response(
            error_body("no_routing_state", f"Routing is not available yet: {exc}."),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    if isinstance(exc, BudgetExhausted):
        response = Response(
            error_body("budget_exhausted", str(exc), budget=BudgetStatusSerializer(exc.status).data),
            status=status.HTTP_402_PAYMENT_REQUIRED,
        )
        response["Retry-After"] = str(max(0, int((exc.status.ends_at - _now()).total_seconds())))
        return response
    if isinstance(exc, InvalidRouteRequest):
        return Response(
            error_body("invalid", str(exc), fields={exc.field: [str(exc)]}), status=status.HTTP_400_BAD_REQUEST
        )
    if isinstance(exc, DecisionNotFound):
        return Response(error_body("not_found", str(exc)), status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )

    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a bug: let Django answer 500 (and log it)
    if isinstance(exc, exceptions.ValidationError):
        fields = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        names = ", ".join(fields)
        response.data = error_body("invalid", f"Invalid input: {names}.", fields=fields)
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "not_found"
        if isinstance(exc, Http404):
            code = "not_found"
        response.data = error_body(code if isinstance(code, str) else "error", str(detail))
    return response


def _now():
    from django.utils import timezone

    return timezone.now()
