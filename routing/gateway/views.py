"""/v1/ — the OpenAI-compatible gateway: ``POST /v1/chat/completions`` and ``GET /v1/models``.

Async views (served by the ASGI server): the body is read and parsed on the event loop, everything
that touches the database or the embedder runs in the gateway's thread pool, and the upstream is
called with an async HTTP client (``routing/gateway/calls.py``). Errors are OpenAI's shape, never
Django's HTML pages.
"""

from __future__ import annotations

import json
import logging
import time

from django.conf import settings
from django.http import JsonResponse
from django.http.request import RawPostDataException
from django.views.decorators.csrf import csrf_exempt

from routing import request_log
from routing.gateway import calls
from routing.gateway.errors import GatewayError, invalid
from routing.gateway.threads import in_thread
from routing.selectors.gateway import models_for
from routing.services.tenancy import api_key_authenticate_cached
from routing.throttling import client_address

logger = logging.getLogger(__name__)


def _bearer(request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    return secret.strip() or None if scheme.lower() == "bearer" else None


def _method_not_allowed(allowed: str) -> JsonResponse:
    return GatewayError(405, f"Use {allowed}.", code="method_not_allowed").response(Allow=allowed)


def _read_body(request) -> bytes:
    """The body, at most ``ROUTERHUB_GATEWAY_MAX_BODY_BYTES``. The web processes stop reading a body at
    that cap already (``routerhub/request_bodies.py``); checked again for any other way in (the test client)."""
    limit = settings.ROUTERHUB_GATEWAY_MAX_BODY_BYTES
    try:
        declared = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        raise invalid("Bad Content-Length header.", None) from None
    if declared > limit:
        raise _too_large(f"{declared:,} bytes", limit)
    try:
        raw = request.read(limit + 1)  # also bounds a chunked body, which declares no length
    except RawPostDataException:
        raw = request.body
    if len(raw) > limit:
        raise _too_large(f"over {limit:,} bytes", limit)
    return raw


def _too_large(size: str, limit: int) -> GatewayError:
    return GatewayError(413, f"The request body is {size}; at most {limit:,} are accepted.", code="request_too_large")


def _parse(raw: bytes):
    try:
        return json.loads(raw)
    except RecursionError:
        raise invalid("The JSON body is nested too deeply.", None, "invalid_json") from None
    except ValueError as exc:
        raise invalid(f"The body is not valid JSON: {exc}.", None, "invalid_json") from None


def _internal_error() -> JsonResponse:
    logger.exception("gateway request failed")
    return GatewayError(
        500, "The gateway failed on this request.", type="server_error", code="internal_error"
    ).response()


@csrf_exempt
async def chat_completions(request):
    started = time.perf_counter()
    if request.method != "POST":
        return _method_not_allowed("POST")
    try:
        body = _parse(_read_body(request))
        prepared = await calls.prepare_async(
            secret=_bearer(request), body=body, started=started, address=client_address(request)
        )
    except GatewayError as error:
        return error.response()
    except Exception:  # a bug or the database failing: still an answer in OpenAI's shape
        return _internal_error()
    request_log.note(
        tenant=prepared.plan.tenant,
        model=_model_label(prepared.chat.model),
        decision_id=str(prepared.plan.decision_id),
    )
    plan = prepared.plan
    request_log.on_span(
        strategy=plan.strategy,
        state_version=plan.state_version,
        cluster=plan.cluster,
        lam=plan.lam,
        estimated_cost_usd=format(plan.candidates[0].estimated_cost_usd.normalize(), "f"),
    )
    try:
        return await calls.respond(prepared)
    except Exception:
        return _internal_error()


def _model_label(model: str) -> str:
    """The model asked for as metrics label it: a tenant's presets are its own, so one word for them all."""
    return "routerhub-auto:<preset>" if model.startswith("routerhub-auto:") else model


def _models(secret: str | None) -> list[tuple[str, str]]:
    api_key = api_key_authenticate_cached(secret=secret) if secret else None
    if api_key is None:
        raise GatewayError(
            401, "Missing, unknown or revoked API key.", type="authentication_error", code="invalid_api_key"
        )
    return models_for(tenant=api_key.tenant)


@csrf_exempt
async def models(request):
    if request.method != "GET":
        return _method_not_allowed("GET")
    try:
        listed = await in_thread(_models, _bearer(request))
    except GatewayError as error:
        return error.response()
    except Exception:
        return _internal_error()
    created = 1700000000  # OpenAI's field; routerhub does not track when an LLM was published
    return JsonResponse(
        {
            "object": "list",
            "data": [{"id": name, "object": "model", "created": created, "owned_by": owner} for name, owner in listed],
        }
    )


@csrf_exempt
async def not_found(request, path: str = ""):
    return GatewayError(404, f"Unknown endpoint /v1/{path}.", code="unknown_url").response()
