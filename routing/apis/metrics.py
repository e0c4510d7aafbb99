"""/metrics: the Prometheus exposition (``routing/metrics.py``), for a scraper holding
``ROUTERHUB_METRICS_TOKEN`` as a bearer token, or for staff signed in to the admin.

Without a token configured, anyone but staff is told the page does not exist (404); with one, a
missing or wrong token is a 401. Both as JSON, like every other refusal of the API. With
``ROUTERHUB_METRICS`` off there is nothing to serve: 404 to everyone.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from routing import metrics


def _refusal(status: int, code: str, message: str) -> JsonResponse:
    response = JsonResponse({"error": {"code": code, "message": message, "fields": {}}}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


def _token_matches(request, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


@require_GET
def metrics_view(request):
    if not metrics.enabled():
        return _refusal(404, "not_found", "Not found.")
    token = settings.ROUTERHUB_METRICS_TOKEN
    staff = request.user.is_authenticated and request.user.is_staff
    if not staff and not (token and _token_matches(request, token)):
        if not token:
            return _refusal(404, "not_found", "Not found.")
        return _refusal(401, "not_authenticated", "Send the metrics token: 'Authorization: Bearer <token>'.")
    return HttpResponse(metrics.exposition(), content_type=CONTENT_TYPE_LATEST)
