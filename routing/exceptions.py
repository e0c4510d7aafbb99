"""Domain errors of routing. Services and selectors raise them; ``routing/apis/errors.py`` turns
each into a JSON answer with its HTTP status, in one place."""

from __future__ import annotations

import re


class RoutingError(ValueError):
    """A fit or profile cannot be done with the data at hand; the message says why."""


class NoActiveRoutingState(LookupError):
    """No router has been fitted yet (``manage.py fit_router``)."""


class InvalidRouteRequest(ValueError):
    """A route request that cannot be served as asked; ``field`` names the offending input."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


class FieldNotAccepted(InvalidRouteRequest):
    """A gateway request sets a field (``field``, at the top level of the body) that changes what the
    provider bills beyond the LLM's token prices, and no LLM it may go to accepts it
    (``registry/gateway_fields.py``)."""


class UnknownStrategy(InvalidRouteRequest):
    """A request named a strategy no routing state has been fitted with."""


class DecisionNotFound(LookupError):
    """No such decision for the caller (another tenant's decision looks the same as none)."""


class InvalidFeedback(InvalidRouteRequest):
    """Feedback that cannot be recorded as sent; ``field`` names the offending input."""


class UnknownModel(LookupError):
    """A gateway request named a model the tenant cannot call (OpenAI answers 404 for both)."""


class UnacceptableJSON(ValueError):
    """A request body holds JSON the service cannot store or pass on (``routing/json_checks.py``);
    ``path`` is where (``messages[0].content``), ``field`` its top-level field."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.field = re.split(r"[.\[]", path, maxsplit=1)[0] or "non_field_errors"
        super().__init__(message)
