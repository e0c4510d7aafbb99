"""One JSON log line per request served with an API key, and the request id that ties it together.

``routerhub/handlers.py`` opens a :class:`RequestNotes` for each request (a context variable, so the
gateway's code on the event loop can add what it learns: tenant, model asked for, LLM that answered,
cost) and, once the last byte is sent, writes the line to the ``routerhub.requests`` logger and counts
the request in ``routing/metrics.py``. The line holds ids, names, timings and figures: never a prompt,
an answer or a key. The same notes, and the routing of a gateway call, go on the request's trace span
when tracing is on (``routerhub/tracing.py``) as ``routerhub.<name>`` attributes.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextvars import ContextVar
from dataclasses import dataclass

from opentelemetry import trace

from routing import metrics

HEADER = "X-Request-Id"
logger = logging.getLogger("routerhub.requests")
# A client's own id is kept when it looks like one (log-safe: no spaces, quotes or control characters).
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_TIMING = re.compile(r"\s*([A-Za-z][\w-]*)\s*(?:;[^,]*?dur=([0-9.]+))?[^,]*")


@dataclass
class RequestNotes:
    request_id: str
    tenant: str | None = None
    model: str | None = None  # the model asked for, once the router resolved it
    llm: str | None = None  # the LLM that answered (or was chosen)
    decision_id: str | None = None
    cost_usd: str | None = None


_current: ContextVar[RequestNotes | None] = ContextVar("routerhub_request_notes", default=None)


def request_id_from(headers) -> str:
    """The client's ``X-Request-Id`` when it is a plain token, else a new one."""
    given = headers.get(HEADER, "")
    return given if _CLIENT_ID.fullmatch(given) else uuid.uuid4().hex


def begin(request_id: str) -> RequestNotes:
    notes = RequestNotes(request_id=request_id)
    _current.set(notes)
    on_span(request_id=request_id)
    return notes


def note(**fields) -> None:
    """Add what is known of the current request (nothing happens outside one)."""
    notes = _current.get()
    if notes is not None:
        for name, value in fields.items():
            setattr(notes, name, value)
    on_span(**fields)


def on_span(**fields) -> None:
    """``routerhub.<name>`` attributes of the current trace span (the request's); None values are left
    out. Nothing happens when tracing is off: the current span is then the API's non-recording one."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes({f"routerhub.{name}": value for name, value in fields.items() if value is not None})


def upstream_headers() -> dict[str, str]:
    """The request id, sent with the upstream call so a provider's logs can be matched with ours."""
    notes = _current.get()
    return {HEADER: notes.request_id} if notes is not None else {}


def server_timing(header: str) -> dict[str, float]:
    """``{stage: ms}`` of a Server-Timing header."""
    stages = {}
    for part in header.split(","):
        match = _TIMING.match(part)
        if match and match.group(2):
            try:
                stages[match.group(1)] = float(match.group(2))
            except ValueError:
                continue
    return stages


def endpoint_of(request) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "unmatched"
    return match.view_name if match.url_name else "unmatched"


# What the line and the counts say of a request whose client left before it was answered (nginx's word).
CLIENT_CLOSED = 499


def finished(request, response, notes: RequestNotes, total_ms: float) -> None:
    """Count the request and write its line (``response`` None: the client left before the answer).
    A failure here is logged, never passed on: the answer has gone already."""
    try:
        _finished(request, response, notes, total_ms)
    except Exception:
        logger.exception("counting or logging request %s failed", notes.request_id)


def _finished(request, response, notes: RequestNotes, total_ms: float) -> None:
    endpoint = endpoint_of(request)
    status = response.status_code if response is not None else CLIENT_CLOSED
    headers = response if response is not None else {}
    stages = server_timing(headers.get("Server-Timing", ""))
    stages["total"] = total_ms
    tenant = notes.tenant
    user = getattr(request, "user", None)  # the REST API's TenantUser, set by its authentication
    if tenant is None and getattr(user, "tenant", None) is not None:
        tenant = user.tenant.name
    llm = notes.llm or headers.get("X-Routerhub-Model")
    decision_id = notes.decision_id or headers.get("X-Routerhub-Decision-Id") or headers.get("X-Routerhub-Decision")
    cost = notes.cost_usd or headers.get("X-Routerhub-Cost-Usd")
    metrics.observe_request(endpoint=endpoint, status=status, model=notes.model or "", stages=stages)
    if logger.isEnabledFor(logging.INFO):
        line = {
            "request_id": notes.request_id,
            "method": request.method,
            "route": endpoint,
            "status": status,
            "tenant": tenant,
            "model": notes.model,
            "llm": llm,
            "decision_id": decision_id,
            "cost_usd": cost,
            "stages_ms": {name: round(ms, 3) for name, ms in stages.items()},
        }
        logger.info(json.dumps(line, separators=(",", ":")))
