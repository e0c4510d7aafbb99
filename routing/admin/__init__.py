"""The routing app's admin, one module per concept; importing them registers their ModelAdmins."""

from routing.admin import budgets, decisions, gateway, jobs, llms, schedules, state, tenancy  # noqa: F401
