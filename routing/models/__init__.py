from routing.models.decisions import Decision
from routing.models.feedback import DecisionFeedback
from routing.models.gateway import GatewayExchange, Preset
from routing.models.jobs import Job
from routing.models.state import LLMProfile, RoutingState, StateCentroid
from routing.models.tenancy import ApiKey, BudgetPeriod, Tenant

__all__ = [
    "ApiKey",
    "BudgetPeriod",
    "Decision",
    "DecisionFeedback",
    "GatewayExchange",
    "Job",
    "LLMProfile",
    "Preset",
    "RoutingState",
    "StateCentroid",
    "Tenant",
]
