"""Log-in pages that stop password guessing: ``/login/`` (the dashboard's) and ``/admin/login/``.

A failed log-in counts against the client's address (``FAILED_LOGIN_RATE``) and
against the user name tried, from any address (``FAILED_LOGIN_USER_RATE``: guessing
one account from many addresses). Over either, the log-in is answered 429 with ``Retry-After``
before the password is checked — the right password included, so the answer tells a guesser
nothing — until the window ends. The counters are the API's fixed windows in Django's cache
(``routing/throttling.py``); the address is ``client_address``, which believes
``X-Forwarded-For`` from ``ROUTERHUB_TRUSTED_PROXIES`` only.
"""

from __future__ import annotations

import functools
import hashlib
import math

from django.http import JsonResponse
from django.shortcuts import render

from routing.throttling import FixedWindow, client_address

# Failed log-ins per client address, and per user name from any address (module docstring).
FAILED_LOGIN_RATE = "20/h"
FAILED_LOGIN_USER_RATE = "50/h"


def _address_window() -> FixedWindow:
    return FixedWindow("failed_login_address", FAILED_LOGIN_RATE)


def _user_window() -> FixedWindow:
    return FixedWindow("failed_login_user", FAILED_LOGIN_USER_RATE)


def _user_ident(username: str) -> str:
    # Hashed: a user name is free text of any length, and cache keys are not.
    return hashlib.sha256(username.strip().casefold().encode("utf-8", "surrogatepass")).hexdigest()[:32]


def throttled_login(view):
    """Wraps a log-in view: refuses a POST while its address or user name is over its limit, and
    counts a POST that logs no one in (the view answers with its form rather than a redirect)."""

    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        if request.method != "POST":
            return view(request, *args, **kwargs)
        address = client_address(request)
        user = _user_ident(request.POST.get("username", ""))
        waits = [_address_window().exceeded(address), _user_window().exceeded(user)]
        if any(wait is not None for wait in waits):
            return too_many_attempts(request, max(wait for wait in waits if wait is not None))
        response = view(request, *args, **kwargs)
        if not 300 <= response.status_code < 400:
            _address_window().hit(address)
            _user_window().hit(user)
        return response

    return wrapped


def too_many_attempts(request, wait: float):
    seconds = math.ceil(wait)
    message = f"Too many failed log-ins from this address or for this user name; try again in {_duration(seconds)}."
    if request.get_preferred_type(["text/html", "application/json"]) == "application/json":
        response = JsonResponse(
            {"error": {"code": "throttled", "message": message, "retry_after_seconds": seconds}}, status=429
        )
    else:
        response = render(request, "registration/throttled.html", {"message": message}, status=429)
    response["Retry-After"] = str(seconds)
    return response


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    return f"{math.ceil(seconds / 60)} minutes"
