"""Domain errors of routing, all of them. Services and selectors raise them; each API style turns
them into its answers in one place: ``routing/apis/errors.py`` for /api/, ``routing/gateway/errors.py``
for the OpenAI-compatible /v1/."""

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


class BudgetExhausted(Exception):
    """The tenant's budget for the period is spent (policy "reject"). ``status`` is the period's
    ``BudgetStatus`` (``routing/selectors/budgets.py``)."""

    def __init__(self, status, cheapest_cost_usd: float | None = None) -> None:
        self.status = status
        self.cheapest_cost_usd = cheapest_cost_usd
        super().__init__(
            f"The {status.adjective} budget of tenant {status.tenant!r} is spent "
            f"({status.spent_usd.normalize():f} of {status.limit_usd.normalize():f} USD used"
            + (
                f"; the cheapest allowed LLM would cost {cheapest_cost_usd:.8f} USD"
                if cheapest_cost_usd is not None
                else ""
            )
            + f"). It resets at {status.ends_at.isoformat()}."
        )


class JobBusy(RuntimeError):
    """Another worker is running this job right now."""
