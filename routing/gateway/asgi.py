"""The ASGI handler of the gateway (``/v1/``): Django's own, without its thread hops.

Django's ASGI handler runs every synchronous piece of a request in a thread and waits for it: the
``request_started`` and ``request_finished`` signals (connection housekeeping) and each hook of each
middleware (``MiddlewareMixin`` sends ``process_request``, ``process_view`` and ``process_response``
through ``sync_to_async``). A gateway call went through eight such hops besides its own two trips to
the database threads — each a thread hand-over under the GIL, which at 50 calls in flight costs more
than the work itself. The gateway needs none of it:

- its database work runs in its own threads (``threads.py``), which look after their connections
  themselves, so the connection housekeeping of the signals has nothing to do on the event loop;
- of the middleware only the security headers apply (bearer keys, JSON bodies: no session, cookie,
  CSRF token or login). ``SecurityMiddleware`` and ``XFrameOptionsMiddleware`` only read settings and
  set headers, so they are called here directly, on the event loop — the same code, the same headers.

Everything else is Django's: the request object, URL resolution, the async views, error responses.
``routerhub/asgi.py`` sends ``/v1/`` here and every other path to Django's usual handler.
"""

from __future__ import annotations

import asyncio

from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import set_script_prefix

PREFIX = "/v1/"


class GatewayHandler(ASGIHandler):
    def load_middleware(self, is_async=False):
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        self._security = SecurityMiddleware(self._get_response_async)
        self._frame_options = XFrameOptionsMiddleware(self._get_response_async)
        self._middleware_chain = convert_exception_to_response(self._secured)

    async def _secured(self, request):
        response = self._security.process_request(request)  # the HTTPS redirect, when it is on
        if response is None:
            response = await self._get_response_async(request)
        response = self._security.process_response(request, response)
        return self._frame_options.process_response(request, response)

    async def handle(self, scope, receive, send):
        """Django's ``ASGIHandler.handle`` without the request signals and their thread hops."""
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

        async def process_request():
            response = await self.run_get_response(request)
            try:
                await self.send_response(response, send)
            except asyncio.CancelledError:
                pass  # the client left while the answer was being sent
            return response

        # A client that disconnects cancels the view (and so the upstream call), as Django does.
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
            worker.result().close()  # the response's closers (no request_finished receiver has work here)
        body_file.close()


def is_gateway_path(scope) -> bool:
    return scope["type"] == "http" and scope["path"].startswith(PREFIX)
