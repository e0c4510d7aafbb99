"""The one place where exceptions become JSON errors (settings ``REST_FRAMEWORK["EXCEPTION_HANDLER"]``).

Every error answer has the same shape::

    {"error": {"code": "invalid", "message": "…", "fields": {"prompt": ["This field is required."]}}}

``fields`` appears for input errors only, one list of messages per top-level field (a nested
error, say in ``messages[2].role``, is listed under ``messages`` with its path in the message); a
spent budget (402) adds ``budget``. Errors raised outside the views — a body over the size cap, an
unknown URL, a crash — get the same shape from ``routing/apis/middleware.py`` and ``json_error_view``.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from registry.remote_embeddings import EmbedderUnavailable
from routing.apis.serializers import BudgetStatusSerializer, represent
from routing.exceptions import BudgetExhausted, DecisionNotFound, InvalidRouteRequest, NoActiveRoutingState


def error_body(code: str, message: str, **extra) -> dict:
    return {"error": {"code": code, "message": message, **extra}}


def exception_handler(exc, context):
    if isinstance(exc, NoActiveRoutingState):
        return Response(
            error_body("no_routing_state", f"Routing is not available yet: {exc}."),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    if isinstance(exc, EmbedderUnavailable):
        response = Response(
            error_body("embedder_unavailable", f"{exc} Try again shortly."), status=status.HTTP_503_SERVICE_UNAVAILABLE
        )
        response["Retry-After"] = str(exc.retry_after_seconds)
        return response
    if isinstance(exc, BudgetExhausted):
        response = Response(
            error_body("budget_exhausted", str(exc), budget=represent(BudgetStatusSerializer, exc.status)),
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
    if isinstance(exc, RequestDataTooBig):
        return Response(
            error_body("too_large", f"The request body is larger than {settings.ROUTERHUB_MAX_REQUEST_BYTES:,} bytes."),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )

    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a bug: let Django answer 500 (and log it)
    if isinstance(exc, exceptions.ValidationError):
        fields = flatten_field_errors(exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail})
        names = ", ".join(fields)
        response.data = error_body("invalid", f"Invalid input: {names}.", fields=fields)
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "not_found"
        if isinstance(exc, Http404):
            code = "not_found"
        response.data = error_body(code if isinstance(code, str) else "error", str(detail))
    return response


def flatten_field_errors(detail: dict) -> dict[str, list[str]]:
    """``{"messages": [{}, {"role": ["bad"]}]}`` → ``{"messages": ["[1].role: bad"]}``: one flat list of
    strings per top-level field, as the schema's ``fields`` promises."""
    flat = {}
    for field, errors in detail.items():
        messages = []
        _collect(errors, "", messages)
        flat[str(field)] = messages or ["Invalid."]
    return flat


def _collect(errors, path: str, out: list[str]) -> None:
    if isinstance(errors, dict):
        for key, value in errors.items():
            if key == "non_field_errors":
                _collect(value, path, out)
            else:  # ListField / DictField errors are keyed by index or key
                _collect(value, f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}", out)
    elif isinstance(errors, list):
        if all(not isinstance(item, (dict, list)) for item in errors):
            out.extend(f"{path.lstrip('.')}: {item}" if path else str(item) for item in errors)
        else:
            for i, item in enumerate(errors):
                _collect(item, f"{path}[{i}]", out)
    else:
        out.append(f"{path.lstrip('.')}: {errors}" if path else str(errors))


# --- errors raised outside DRF's views (Django's handler400/403/404/500 and the middleware) ---------

DJANGO_ERRORS = {
    400: ("bad_request", "Bad request."),
    403: ("permission_denied", "Forbidden."),
    404: ("not_found", "No such API endpoint."),
    405: ("method_not_allowed", "Method not allowed."),
    413: ("too_large", "The request body is too large."),
    500: ("server_error", "Internal server error; it has been logged."),
}


def json_error(status_code: int, message: str | None = None, **extra) -> JsonResponse:
    code, default = DJANGO_ERRORS[status_code]
    return JsonResponse(error_body(code, message or default, **extra), status=status_code)


def _now():
    from django.utils import timezone

    return timezone.now()
