"""The ASGI handler for calls made with a tenant's API key: Django's own, without its thread hops.

Django's ASGI handler runs every synchronous piece of a request in a thread and waits for it: the
``request_started`` and ``request_finished`` signals (connection housekeeping), each hook of each
middleware (``MiddlewareMixin`` sends ``process_request``, ``process_view`` and ``process_response``
through ``sync_to_async``), a synchronous view, and then its rendering — each a thread hand-over
under the GIL, for every request.

Calls authenticated by a bearer API key — the gateway (``/v1/``) and tenants' calls under ``/api/``
— need little of that:

- of the middleware only the security headers and the API's guard apply (a bearer key, JSON
  bodies: no session, cookie, CSRF token, login or messages). ``SecurityMiddleware`` and
  ``XFrameOptionsMiddleware`` only read settings and set headers, so they are called here directly
  on the event loop — the same code, the same headers; ``ApiRequestGuardMiddleware`` is async already;
- a synchronous view (the REST API's) runs in one hop together with its rendering, in the web
  process's fixed pool of database threads (``routing/gateway/threads.py``), whose threads keep
  their database connection between requests. Django's handler instead opens a
  ``ThreadSensitiveContext`` per request — a new thread each time — and its view's connection goes
  back to the pool afterwards, so the next request's check-out pays a health-check round trip;
- the gateway's async views do their database work in their own threads (``routing/gateway/threads.py``),
  which look after their connections themselves.

Everything else is Django's: the request object, URL resolution, the views, error responses.
``routerhub/asgi.py`` sends such calls here and every other request (the admin, the dashboard, staff
calls with a session) to Django's usual handler, which stays the plain path beside this one. What
this handler saves against Django's own, for the route API and the gateway, is measured in
``benchmarks/results/plain_code.md``.
"""

from __future__ import annotations

import asyncio
import time

from asgiref.sync import iscoroutinefunction
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import set_script_prefix

from routerhub.middleware import GATEWAY_PREFIX
from routing import request_log
from routing.apis.middleware import API_PREFIX, ApiRequestGuardMiddleware
from routing.gateway.threads import in_thread


def called_with_api_key(scope) -> bool:
    """Whether this handler serves the request: the gateway, or an API call sending a bearer key."""
    if scope["type"] != "http":
        return False
    path = scope["path"]
    if path.startswith(GATEWAY_PREFIX):
        return True
    return path.startswith(API_PREFIX) and any(
        name == b"authorization" and value[:7].lower() == b"bearer " for name, value in scope["headers"]
    )


class ApiKeyHandler(ASGIHandler):
    def load_middleware(self, is_async=False):
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        view = convert_exception_to_response(self._get_response_async)
        self._security = SecurityMiddleware(view)
        self._frame_options = XFrameOptionsMiddleware(view)
        self._api_guard = ApiRequestGuardMiddleware(view)  # /api/ only: body cap, errors always JSON
        self._middleware_chain = convert_exception_to_response(self._secured)

    async def _secured(self, request):
        response = self._security.process_request(request)  # the HTTPS redirect, when it is on
        if response is None:
            response = await self._api_guard(request)
        response = self._security.process_response(request, response)
        return self._frame_options.process_response(request, response)

    async def _get_response_async(self, request):
        callback, args, kwargs = self.resolve_request(request)
        if iscoroutinefunction(callback):
            response = await callback(request, *args, **kwargs)
        else:
            response = await in_thread(self._sync_view, callback, request, args, kwargs)
        self.check_response(response, callback)
        return response

    def _sync_view(self, callback, request, args, kwargs):
        """A synchronous view and its rendering: one hop (the pool's thread looks after its connection)."""
        response = self.make_view_atomic(callback)(request, *args, **kwargs)
        if callable(getattr(response, "render", None)):
            response = response.render()
        return response

    async def __call__(self, scope, receive, send):
        # Django's opens a ThreadSensitiveContext here (a new thread per request); nothing of this
        # handler runs with thread_sensitive=True, so none is needed.
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        await self.handle(scope, receive, send)

    async def handle(self, scope, receive, send):
        """Django's ``ASGIHandler.handle`` without the request signals and their thread hops; each request
        gets an id (``X-Request-Id``), is counted and logged (``routing/request_log.py``)."""
        started = time.perf_counter()
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            error_response.close()
            return

        notes = request_log.begin(request_log.request_id_from(request.headers))

        async def process_request():
            response = None
            try:
                response = await self.run_get_response(request)
                response[request_log.HEADER] = notes.request_id
                try:
                    await self.send_response(response, send)
                except asyncio.CancelledError:
                    pass  # the client left while the answer was being sent
                return response
            finally:
                request_log.finished(request, response, notes, (time.perf_counter() - started) * 1e3)

        # A client that disconnects cancels the view (and so a gateway's upstream call), as in Django.
        listener = asyncio.create_task(self.listen_for_disconnect(receive))
        worker = asyncio.create_task(process_request())
        await asyncio.wait([listener, worker], return_when=asyncio.FIRST_COMPLETED)
        for task in (listener, worker):
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    pass
            else:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        if not worker.cancelled():
            worker.result().close()  # the response's own closers; no request_finished receiver has work here
        body_file.close()
