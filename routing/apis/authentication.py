"""``Authorization: Bearer <key>`` for tenants; staff use the admin's session (no HTTP Basic). A
request sending any other ``Authorization`` is refused (401), session or not.

An address that sends too many unknown or revoked keys (``ROUTERHUB_THROTTLE_FAILED_AUTH``) gets
429 with ``Retry-After`` for every key it sends until the window ends, valid ones included: a
different answer for a valid key would tell a guesser it had found one.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from routing.models import ApiKey, Tenant
from routing.services.tenancy import api_key_authenticate_cached
from routing.throttling import client_address, failed_authentication_window


class TenantUser:
    """``request.user`` of a request made with a tenant's API key: authenticated, never staff."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False

    def __init__(self, api_key: ApiKey) -> None:
        self.api_key = api_key
        self.tenant: Tenant = api_key.tenant

    def __str__(self) -> str:
        return f"tenant {self.tenant.name}"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        if "HTTP_AUTHORIZATION" not in request.META:
            return None  # no credentials sent this way: a staff session may follow
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            # Credentials that are not ours are refused, not passed over for a session cookie that
            # came along: a caller whose key is wrong hears so whatever else it sends.
            raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <API key>'.")
        address = client_address(request)
        failures = failed_authentication_window()
        wait = failures.exceeded(address)
        if wait is not None:
            raise exceptions.Throttled(wait=wait, detail="Too many failed authentications from this address.")
        if len(header) != 2:
            failures.hit(address)
            raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <API key>'.")
        try:
            secret = header[1].decode("ascii")
        except UnicodeDecodeError:
            failures.hit(address)
            raise exceptions.AuthenticationFailed("The API key contains invalid characters.") from None
        api_key = api_key_authenticate_cached(secret=secret)  # a revocation elsewhere: seen within seconds
        if api_key is None:
            failures.hit(address)
            raise exceptions.AuthenticationFailed("Unknown or revoked API key.")
        return TenantUser(api_key), api_key

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (not 403) when no credentials were sent.
        return f'{self.keyword} realm="routerhub"'


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "routing.apis.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A tenant API key (`rh_…`), created in the admin or with `manage.py create_api_key`.",
        }


def tenant_of(request) -> Tenant | None:
    """The calling tenant, or None for staff users."""
    return getattr(request.user, "tenant", None)
