"""Middleware of the project (settings ``MIDDLEWARE``)."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.contrib.auth import middleware as auth_middleware
from django.contrib.messages import middleware as message_middleware
from django.contrib.sessions import middleware as session_middleware
from django.middleware import common as common_middleware
from whitenoise.middleware import WhiteNoiseMiddleware

from routing.apis.middleware import SyncAndAsyncMiddleware


class StaticFilesMiddleware(SyncAndAsyncMiddleware, WhiteNoiseMiddleware):
    """WhiteNoise (the admin's static files), usable by the ASGI server without a thread hop.

    WhiteNoise's middleware is synchronous only: one sync middleware makes Django run every request
    of the async server through a thread and back, gateway calls included. This one answers static
    paths (a dictionary lookup) and hands everything else straight on, sync or async alike.
    """

    def __init__(self, get_response=None, settings=None):
        if settings is None:
            WhiteNoiseMiddleware.__init__(self, get_response)
        else:
            WhiteNoiseMiddleware.__init__(self, get_response, settings)
        self.serve_in_the_mode_of(get_response)

    def sync_call(self, request):
        return WhiteNoiseMiddleware.__call__(self, request)

    async def __acall__(self, request):
        if self.autorefresh:  # DEBUG: looks at the file system
            static_file = await sync_to_async(self.find_file)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is not None:
            return await sync_to_async(self.serve)(static_file, request)
        return await self.get_response(request)


class _BrowserOnly(SyncAndAsyncMiddleware):
    """Runs a browser-facing Django middleware (sessions, login, messages, …) on every path except
    the OpenAI-compatible gateway's (``/v1/``), whose callers authenticate with a bearer key and
    read JSON only.

    Under the ASGI server each of Django's own middleware hops to the process's one synchronous
    thread for its ``process_request`` and again for its ``process_response``: a gateway call went
    there and back 12 times, queueing behind every other request of the process each time. Only
    middleware without ``process_view``/``process_exception`` hooks may be wrapped (a wrapper would
    hide them): CSRF stays unwrapped. Each wrapper also subclasses the middleware it wraps, so that
    Django's checks (the admin's need of sessions, authentication and messages) still find it.
    """

    wrapped: type

    def __init__(self, get_response):
        super().__init__(get_response)
        self.inner = self.wrapped(get_response)

    def sync_call(self, request):
        if request.path_info.startswith(GATEWAY_PREFIX):
            return self.get_response(request)
        return self.inner(request)

    async def __acall__(self, request):
        if request.path_info.startswith(GATEWAY_PREFIX):
            return await self.get_response(request)
        return await self.inner(request)


GATEWAY_PREFIX = "/v1/"


class SessionMiddleware(_BrowserOnly, session_middleware.SessionMiddleware):
    wrapped = session_middleware.SessionMiddleware


class CommonMiddleware(_BrowserOnly, common_middleware.CommonMiddleware):
    wrapped = common_middleware.CommonMiddleware


class AuthenticationMiddleware(_BrowserOnly, auth_middleware.AuthenticationMiddleware):
    wrapped = auth_middleware.AuthenticationMiddleware


class MessageMiddleware(_BrowserOnly, message_middleware.MessageMiddleware):
    wrapped = message_middleware.MessageMiddleware
