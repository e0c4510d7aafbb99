"""Shared admin pieces."""

from django.contrib import admin


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by the service (spend, decisions, jobs): shown, never edited by hand.

    ``deletable`` records (jobs, states, profiles) may be deleted by staff with the permission;
    the books (decisions, budget periods) never.
    """

    deletable = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return self.deletable and super().has_delete_permission(request, obj)
