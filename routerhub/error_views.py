"""Django's error handlers (``handler400`` … ``handler500`` in ``routerhub/urls.py``): JSON under
``/api/`` — an API client must never have to parse an HTML page — and Django's pages elsewhere."""

from __future__ import annotations

from django.views import defaults

from routing.apis.errors import json_error
from routing.apis.middleware import API_PREFIX


def _is_api(request) -> bool:
    return request.path_info.startswith(API_PREFIX)


def bad_request(request, exception):
    return json_error(400) if _is_api(request) else defaults.bad_request(request, exception)


def permission_denied(request, exception):
    return json_error(403) if _is_api(request) else defaults.permission_denied(request, exception)


def page_not_found(request, exception):
    if _is_api(request):
        return json_error(404, f"No API endpoint at {request.path_info}; see /api/docs/.")
    return defaults.page_not_found(request, exception)


def server_error(request):
    return json_error(500) if _is_api(request) else defaults.server_error(request)
