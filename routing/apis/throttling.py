"""/api/'s rate limit per API key, as a DRF throttle (settings ``REST_FRAMEWORK``); the counting is
``routing/throttling.py``'s, which the gateway and the log-in pages share."""

from __future__ import annotations

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from routing.throttling import FixedWindow


class ApiKeyRateThrottle(BaseThrottle):
    """``ROUTERHUB_THROTTLE_API_KEY`` requests per API key; staff sessions are not limited by it."""

    def allow_request(self, request, view):
        api_key = getattr(request.user, "api_key", None)
        if api_key is None:
            return True
        self.wait_seconds = FixedWindow("api_key", settings.ROUTERHUB_THROTTLE_API_KEY).hit(str(api_key.id))
        return self.wait_seconds is None

    def wait(self):
        return self.wait_seconds
