from routing.models.budgets import BudgetLease, BudgetPeriod
from routing.models.decisions import Decision
from routing.models.evidence import Evidence, EvidenceApplication
from routing.models.feedback import DecisionFeedback
from routing.models.gateway import GatewayExchange, Preset
from routing.models.jobs import Job
from routing.models.judging import JudgeVerdict
from routing.models.shadow import ShadowBudget, ShadowEvaluation
from routing.models.state import LLMProfile, RoutingState, StateCentroid
from routing.models.tenancy import ApiKey, Tenant, TenantMembership
from routing.models.usage import RejectionDay, UsageDay, UsageRollup

__all__ = [
    "ApiKey",
    "BudgetLease",
    "BudgetPeriod",
    "Decision",
    "DecisionFeedback",
    "Evidence",
    "EvidenceApplication",
    "GatewayExchange",
    "Job",
    "JudgeVerdict",
    "LLMProfile",
    "Preset",
    "RejectionDay",
    "RoutingState",
    "ShadowBudget",
    "ShadowEvaluation",
    "StateCentroid",
    "Tenant",
    "TenantMembership",
    "UsageDay",
    "UsageRollup",
]
