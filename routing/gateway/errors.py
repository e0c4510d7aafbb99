"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}`` with the usual statuses,
so that OpenAI SDKs raise their usual exceptions (BadRequestError, AuthenticationError, …)."""

from __future__ import annotations

from django.http import JsonResponse

from registry.remote_embeddings import EmbedderUnavailable
from routing.exceptions import (
    BudgetExhausted,
    FieldNotAccepted,
    InvalidRouteRequest,
    NoActiveRoutingState,
    UnknownModel,
)


class GatewayError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",  # noqa: A002 (OpenAI's field name)
        param: str | None = None,
        code: str | None = None,
        headers: dict | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self, **headers) -> JsonResponse:
        response = JsonResponse(self.body(), status=self.status)
        for name, value in {**self.headers, **headers}.items():
            response[name] = value
        return response


def invalid(message: str, param: str | None, code: str = "invalid_value") -> GatewayError:
    return GatewayError(400, message, param=param, code=code)


def from_domain(exc: Exception) -> GatewayError | None:
    """The OpenAI-shaped answer to a domain error raised while planning a call (None: not one of ours)."""
    if isinstance(exc, FieldNotAccepted):  # a field of the body itself, not a routing option
        return invalid(str(exc), exc.field, "unsupported_parameter")
    if isinstance(exc, InvalidRouteRequest):
        param = exc.field if exc.field == "routerhub" else f"routerhub.{exc.field}"
        return invalid(str(exc), param)
    if isinstance(exc, UnknownModel):
        return GatewayError(404, str(exc), param="model", code="model_not_found")
    if isinstance(exc, BudgetExhausted):
        from django.utils import timezone

        retry_after = max(0, int((exc.status.ends_at - timezone.now()).total_seconds()))
        return GatewayError(
            402, str(exc), type="insufficient_quota", code="budget_exhausted", headers={"Retry-After": str(retry_after)}
        )
    if isinstance(exc, NoActiveRoutingState):
        return GatewayError(503, f"Routing is not available yet: {exc}.", type="server_error", code="no_routing_state")
    if isinstance(exc, EmbedderUnavailable):
        # Only routed calls embed: a call that names an LLM never gets here.
        return GatewayError(
            503,
            f"{exc} Try again shortly, or name an LLM as the model.",
            type="server_error",
            code="embedder_unavailable",
            headers={"Retry-After": str(exc.retry_after_seconds)},
        )
    return None
