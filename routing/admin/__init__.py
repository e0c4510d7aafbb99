"""The routing app's admin, one module per concept; importing them registers their ModelAdmins."""

from django.contrib import admin

from routing.admin import (  # noqa: F401
    budgets,
    decisions,
    evidence,
    gateway,
    jobs,
    judging,
    llms,
    schedules,
    shadow,
    state,
    tenancy,
)

# Without the navigation sidebar (the index lists the same models) the change lists keep their key
# columns visible on a 1,400 px screen; "View site" in the header opens the dashboard at /.
admin.site.enable_nav_sidebar = False
