"""Guards around the API views (settings ``MIDDLEWARE``), for every path under ``/api/``:

- a body size cap with a JSON 413. Under the ASGI server bodies are capped while they are read
  (``routerhub/request_bodies.py``), before any handler or middleware; a request that did not come
  that way (a WSGI server, Django's test client) announcing a body over ``ROUTERHUB_MAX_REQUEST_BYTES``
  is answered here before anything reads it;
- a chunked body (no ``Content-Length``) is given its length once read: DRF's parsers read a body only
  when ``Content-Length`` announces one, and would take such a request for one without a body;
- errors are JSON: an error answer in any other format (a renderer chosen by the Accept header,
  Django's debug pages) is replaced by the JSON error of its status, headers such as
  ``Retry-After`` and ``Allow`` kept.
"""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import JsonResponse

from routing.apis.errors import DJANGO_ERRORS, error_body, json_error

API_PREFIX = "/api/"


class SyncAndAsyncMiddleware:
    """Middleware Django runs in the server's own mode, sync or async, with no thread hop between.

    Under the ASGI server one synchronous middleware would send every request, the gateway's too,
    through a thread and back. Subclasses write ``sync_call`` and ``__acall__``.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.serve_in_the_mode_of(get_response)

    def serve_in_the_mode_of(self, get_response) -> None:
        """Take ``get_response``'s mode: after an async one, this middleware is a coroutine function too."""
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        return self.sync_call(request)

    def sync_call(self, request):
        raise NotImplementedError

    async def __acall__(self, request):
        raise NotImplementedError


class ApiRequestGuardMiddleware(SyncAndAsyncMiddleware):
    def sync_call(self, request):
        if request.path_info.startswith(API_PREFIX):
            refused = self._refuse(request)
            if refused is not None:
                return refused
            return _as_json_error(self.get_response(request))
        return self.get_response(request)

    async def __acall__(self, request):
        if request.path_info.startswith(API_PREFIX):
            refused = self._refuse(request)
            if refused is not None:
                return refused
            return _as_json_error(await self.get_response(request))
        return await self.get_response(request)

    @staticmethod
    def _refuse(request):
        if "CONTENT_LENGTH" not in request.META and "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
            # Read whole (and capped) by the ASGI handler already; a WSGI server's chunked body reads as empty.
            request.META["CONTENT_LENGTH"] = str(len(request.body))
        announced = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(announced)
        except ValueError:
            return json_error(
                400, "The Content-Length header is not a number.", fields={"Content-Length": [announced[:50]]}
            )
        limit = settings.ROUTERHUB_MAX_REQUEST_BYTES
        if length > limit:
            return json_error(413, f"The request body is {length:,} bytes; at most {limit:,} are accepted.")
        return None


KEPT_HEADERS = ("Retry-After", "Allow", "WWW-Authenticate")


def _as_json_error(response):
    if response.status_code < 400 or response.get("Content-Type", "").startswith("application/json"):
        return response
    error = json_error(response.status_code) if response.status_code in DJANGO_ERRORS else None
    if error is None:
        error = JsonResponse(error_body("error", response.reason_phrase or "Error."), status=response.status_code)
    for header in KEPT_HEADERS:
        if header in response:
            error[header] = response[header]
    return error
