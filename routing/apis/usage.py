"""/api/v1/usage: a tenant's spend by day and by LLM (staff: any tenant's, or every tenant's)."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.response import Response

from routing.apis.authentication import tenant_of
from routing.apis.base import ApiBase, errors
from routing.apis.serializers import BudgetStatusSerializer, ErrorSerializer, StrictCharField
from routing.selectors.budgets import status_of
from routing.selectors.tenancy import tenant_by_name
from routing.selectors.usage import usage_summary
from routing.services.budgets import budget_period_current


class UsageRowSerializer(serializers.Serializer):
    requests = serializers.IntegerField()
    estimated_usd = serializers.FloatField(help_text="What routing estimated (and reserved) for the requests.")
    reported_usd = serializers.FloatField(
        help_text="What feedback reported the calls cost, over the requests whose feedback reported a cost "
        "(with_reported_cost)."
    )
    recorded_usd = serializers.FloatField(
        help_text="What the budget counts: the estimate, or the reported cost but never below what the counted "
        "prompt tokens cost; overage included."
    )
    spent_usd = serializers.FloatField(help_text="The same as recorded_usd (its earlier name).")
    with_feedback = serializers.IntegerField()
    with_reported_cost = serializers.IntegerField()
    mean_quality_score = serializers.FloatField(allow_null=True)


class UsageDayRowSerializer(UsageRowSerializer):
    day = serializers.DateField()


class UsageLlmRowSerializer(UsageRowSerializer):
    llm = serializers.CharField(source="llm_name")


class UsageSummaryApi(ApiBase):
    staff_permissions = {"GET": ("routing.view_decision",)}

    class FilterSerializer(serializers.Serializer):
        since = serializers.DateField(
            required=False,
            help_text="First UTC day (default: the start of the current budget period). A day after `until` makes "
            "an empty range.",
        )
        until = serializers.DateField(required=False, help_text="Last UTC day, inclusive (default: today).")
        tenant = StrictCharField(required=False, help_text="Staff only: one tenant's usage (default: every tenant's).")

    @extend_schema_serializer(component_name="Usage")
    class OutputSerializer(serializers.Serializer):
        tenant = serializers.CharField(allow_null=True)
        since = serializers.DateField()
        until = serializers.DateField()
        totals = UsageRowSerializer()
        by_day = UsageDayRowSerializer(many=True)
        by_llm = UsageLlmRowSerializer(many=True)
        budget = BudgetStatusSerializer(allow_null=True, help_text="The current budget period (one tenant only).")

    @extend_schema(
        operation_id="usage_retrieve",
        summary="Spend by day and by LLM",
        parameters=[FilterSerializer],
        responses={
            200: OutputSerializer,
            **errors(400, 401, 403),
            404: OpenApiResponse(ErrorSerializer, description="No tenant with this name."),
        },
    )
    def get(self, request):
        # A plain dict, not the QueryDict: DRF takes a form's empty value for "not given", and
        # `?until=` would answer for today instead of being refused as no date.
        filters = self.FilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        tenant = tenant_of(request)
        if "tenant" in filters.validated_data:
            if tenant is not None:
                raise PermissionDenied("Only staff may ask for another tenant's usage.")
            name = filters.validated_data["tenant"]
            tenant = tenant_by_name(name=name)
            if tenant is None:
                raise NotFound(f"No tenant named {name!r}.")
        status_ = None
        if tenant is not None:
            status_ = status_of(budget_period_current(tenant=tenant), tenant)
        today = timezone.now().date()
        since = filters.validated_data.get("since") or (status_.starts_at.date() if status_ else today.replace(day=1))
        until = filters.validated_data.get("until") or today
        usage = usage_summary(tenant=tenant, since=since, until=until)
        return Response(
            self.OutputSerializer(
                {
                    "tenant": tenant.name if tenant else None,
                    "since": usage.since,
                    "until": usage.until,
                    "totals": usage.totals,
                    "by_day": usage.by_day,
                    "by_llm": usage.by_llm,
                    "budget": status_,
                }
            ).data
        )
