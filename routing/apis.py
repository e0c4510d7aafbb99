"""The customer API (/api/v1/): one thin view per use-case; the work happens in services/selectors.

Errors are raised as domain exceptions and turned into JSON in ``routing.api_errors``.
"""

from __future__ import annotations

import time
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, extend_schema_serializer
from rest_framework import permissions, serializers, status
from rest_framework.authentication import BasicAuthentication, SessionAuthentication
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from registry.models import LLM
from registry.services import llm_register, llm_update
from routing import budgets
from routing.authentication import ApiKeyAuthentication, tenant_of
from routing.decisions import Feedback, RouteRequest, decision_feedback, decision_get, route_create
from routing.jobs import job_enqueue
from routing.models import Decision, Job, Tenant
from routing.prompt_text import route_input
from routing.runtime import active_router
from routing.serializers import (
    AlternativeSerializer,
    BudgetStatusSerializer,
    ErrorSerializer,
    LlmRefSerializer,
    MessageSerializer,
    RejectUnknownFieldsMixin,
    StrictCharField,
    StrictFloatField,
    StrictIntegerField,
    check_messages,
    check_text_size,
)
from routing.strategies import STRATEGIES
from routing.usage import usage_summary


def errors(*codes: int) -> dict:
    described = {
        400: "Invalid input; `error.fields` names each bad field.",
        401: "Missing, unknown or revoked API key.",
        402: "The tenant's budget for this period is spent (policy 'reject'); `error.budget` says when it resets.",
        403: "Not allowed for this caller.",
        404: "No such decision for this tenant.",
        503: "No routing state has been fitted yet.",
    }
    return {code: OpenApiResponse(ErrorSerializer, description=described[code]) for code in codes}


class IsTenant(permissions.BasePermission):
    message = "Routing needs a tenant API key (Authorization: Bearer rh_…)."

    def has_permission(self, request, view):
        return tenant_of(request) is not None


class IsTenantOrStaff(permissions.BasePermission):
    def has_permission(self, request, view):
        return tenant_of(request) is not None or bool(request.user and request.user.is_staff)


class ApiBase(APIView):
    # Tenants use their API key; staff (admin users) their session or HTTP Basic.
    authentication_classes = [ApiKeyAuthentication, SessionAuthentication, BasicAuthentication]
    permission_classes = [IsTenantOrStaff]


# --- route ----------------------------------------------------------------------------------------

class RouteCreateApi(ApiBase):
    permission_classes = [IsTenant]

    def initial(self, request, *args, **kwargs):
        self.started = time.perf_counter()  # before authentication: Server-Timing's "app" covers it
        super().initial(request, *args, **kwargs)

    @extend_schema_serializer(component_name="Route")
    class InputSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
        prompt = StrictCharField(required=False, trim_whitespace=False, help_text="The prompt to route. Give this or `messages`.")
        messages = MessageSerializer(many=True, required=False, allow_empty=False, help_text="An OpenAI-format chat: routed on its last user turn plus a bounded amount of the turns before it.")
        models = serializers.ListField(child=StrictCharField(max_length=100), required=False, allow_empty=False, max_length=500, help_text="Only consider these LLMs.")
        locals()["lambda"] = StrictFloatField(required=False, min_value=0, help_text="Cost weight λ ≥ 0 in argmin loss + λ·cost (USD). Omit to pace λ to the budget.")
        quality_target = StrictFloatField(required=False, min_value=0, max_value=1, help_text="Choose the cheapest LLM whose predicted quality reaches this.")
        max_cost_usd = StrictFloatField(required=False, min_value=0, help_text="Never choose an LLM estimated to cost more than this for the prompt.")
        strategy = serializers.ChoiceField(choices=sorted(STRATEGIES), required=False, help_text="Route with the newest state fitted with this strategy (default: the active state).")

        def validate_prompt(self, value):
            if not value.strip():
                raise serializers.ValidationError("The prompt is empty.")
            check_text_size(value)
            return value

        def validate_messages(self, value):
            check_messages(value)
            return value

        def validate(self, data):
            if ("prompt" in data) == ("messages" in data):
                raise serializers.ValidationError({"prompt": ["Give either `prompt` or `messages` (exactly one)."]})
            return data

    @extend_schema_serializer(component_name="RouteDecision")
    class OutputSerializer(serializers.Serializer):
        decision_id = serializers.UUIDField(source="decision.id")
        llm = LlmRefSerializer(help_text="Send the prompt here.")
        predicted_quality = serializers.FloatField(source="decision.predicted_quality", help_text="1 − predicted loss: the router's estimate of the chance of a good answer.")
        estimated_cost_usd = serializers.FloatField(source="decision.estimated_cost_usd")
        input_tokens = serializers.IntegerField(source="decision.prompt_tokens", help_text="Tokens of the prompt (estimated).")
        expected_output_tokens = serializers.SerializerMethodField()
        lambda_used = serializers.FloatField(source="decision.lambda_used", allow_null=True)
        lambda_reason = serializers.ChoiceField(source="decision.lambda_reason", choices=Decision.LambdaReason.choices)
        strategy = serializers.CharField(source="decision.strategy")
        strategy_params = serializers.DictField(help_text="The hyper-parameters of the routing state that decided: chosen by self-tuning on its training LLMs, or as given.")
        routing_state_version = serializers.IntegerField(source="decision.state_version")
        cluster = serializers.IntegerField(source="decision.cluster", allow_null=True, help_text="The prompt's K-means cluster (K-means strategies only).")
        alternatives = AlternativeSerializer(source="decision.alternatives", many=True, help_text="The next best allowed LLMs, best first.")
        budget = BudgetStatusSerializer()
        notes = serializers.ListField(child=serializers.CharField())

        def get_expected_output_tokens(self, result) -> int:
            return settings.ROUTERHUB_EXPECTED_OUTPUT_TOKENS

    @extend_schema(
        operation_id="route_create", summary="Choose the LLM for a prompt",
        request=InputSerializer, responses={200: OutputSerializer, **errors(400, 401, 402, 403, 503)},
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        routed = route_input(prompt=data.get("prompt"), messages=data.get("messages"))
        result = route_create(
            tenant=tenant_of(request), api_key=request.auth,
            request=RouteRequest(
                text=routed.request, context=routed.context, input_tokens=routed.input_tokens, models=data.get("models"), lam=data.get("lambda"),
                quality_target=data.get("quality_target"), max_cost_usd=data.get("max_cost_usd"), strategy=data.get("strategy"),
            ),
        )
        response = Response(self.OutputSerializer(result).data)
        response["X-Routerhub-Model"] = result.llm.name
        response["X-Routerhub-Decision"] = str(result.decision.id)
        # embed: the prompt's embedding (or a cache hit); route: prediction, λ and selection;
        # budget: reservation + decision row; app: the whole view, authentication to serialised answer.
        response["Server-Timing"] = (
            f'embed;dur={result.embed_ms:.3f};desc="{"cached" if result.embedding_cached else "computed"}", '
            f"route;dur={result.route_ms:.3f}, budget;dur={result.budget_ms:.3f}, "
            f"app;dur={(time.perf_counter() - self.started) * 1e3:.3f}"
        )
        return response


class FeedbackStateSerializer(serializers.Serializer):
    actual_cost_usd = serializers.FloatField(allow_null=True)
    input_tokens = serializers.IntegerField(allow_null=True)
    output_tokens = serializers.IntegerField(allow_null=True)
    latency_ms = serializers.FloatField(allow_null=True)
    quality_score = serializers.FloatField(allow_null=True)
    received_at = serializers.DateTimeField(source="feedback_at")


class DecisionOutputSerializer(serializers.Serializer):
    decision_id = serializers.UUIDField(source="id")
    created_at = serializers.DateTimeField()
    tenant = serializers.CharField(source="tenant.name")
    llm = LlmRefSerializer()
    predicted_quality = serializers.FloatField()
    estimated_cost_usd = serializers.FloatField()
    input_tokens = serializers.IntegerField(source="prompt_tokens", help_text="Tokens of the prompt (estimated at routing time).")
    lambda_used = serializers.FloatField(allow_null=True)
    lambda_reason = serializers.ChoiceField(choices=Decision.LambdaReason.choices)
    strategy = serializers.CharField()
    routing_state_version = serializers.IntegerField(source="state_version")
    cluster = serializers.IntegerField(allow_null=True)
    alternatives = AlternativeSerializer(many=True)
    counted_usd = serializers.SerializerMethodField(help_text="What this decision counts in the budget now: its reservation (corrected by feedback) plus any overage.")
    feedback = serializers.SerializerMethodField(help_text="What the client reported after its call; null until then.")

    def get_counted_usd(self, decision) -> float:
        return float(decision.reserved_usd + decision.overage_usd)

    @extend_schema_field(FeedbackStateSerializer(allow_null=True))
    def get_feedback(self, decision):
        return FeedbackStateSerializer(decision).data if decision.feedback_at else None


class DecisionDetailApi(ApiBase):
    OutputSerializer = DecisionOutputSerializer

    @extend_schema(operation_id="route_retrieve", summary="A routing decision", responses={200: DecisionOutputSerializer, **errors(401, 404)})
    def get(self, request, decision_id):
        decision = decision_get(decision_id=decision_id, tenant=tenant_of(request))
        return Response(self.OutputSerializer(decision).data)


class DecisionFeedbackApi(ApiBase):
    @extend_schema_serializer(component_name="Feedback")
    class InputSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
        actual_cost_usd = StrictFloatField(required=False, min_value=0, help_text="What the call cost (USD). Replaces the estimate in the budget.")
        input_tokens = StrictIntegerField(required=False, min_value=0)
        output_tokens = StrictIntegerField(required=False, min_value=0, help_text="Without actual_cost_usd, the cost is recomputed from the LLM's prices and these tokens.")
        latency_ms = StrictFloatField(required=False, min_value=0)
        quality_score = StrictFloatField(required=False, min_value=0, max_value=1, help_text="How good the answer was, 0–1. Stored as an outcome that later refits may use.")

        def validate(self, data):
            if not data:
                raise serializers.ValidationError({"non_field_errors": ["Give at least one of: " + ", ".join(self.fields) + "."]})
            return data

    @extend_schema(
        operation_id="route_feedback", summary="Report what the routed call cost and how good it was",
        description="Idempotent: sending the same feedback again changes nothing; a later feedback fills in or corrects fields.",
        request=InputSerializer, responses={200: DecisionOutputSerializer, **errors(400, 401, 404)},
    )
    def post(self, request, decision_id):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        decision = decision_get(decision_id=decision_id, tenant=tenant_of(request))
        if "actual_cost_usd" in data:
            data["actual_cost_usd"] = Decimal(str(data["actual_cost_usd"]))
        decision = decision_feedback(decision=decision, feedback=Feedback(**data))
        return Response(DecisionOutputSerializer(decision).data)


# --- usage ----------------------------------------------------------------------------------------

class UsageRowSerializer(serializers.Serializer):
    requests = serializers.IntegerField()
    spent_usd = serializers.FloatField(help_text="Reservations (actual costs where feedback reported them) plus overage.")
    estimated_usd = serializers.FloatField()
    with_feedback = serializers.IntegerField()
    mean_quality_score = serializers.FloatField(allow_null=True)


class UsageDayRowSerializer(UsageRowSerializer):
    day = serializers.DateField()


class UsageLlmRowSerializer(UsageRowSerializer):
    llm = serializers.CharField(source="llm_name")


class UsageSummaryApi(ApiBase):
    class FilterSerializer(serializers.Serializer):
        since = serializers.DateField(required=False, help_text="First UTC day (default: the start of the current budget period).")
        until = serializers.DateField(required=False, help_text="Last UTC day, inclusive (default: today).")
        tenant = serializers.CharField(required=False, help_text="Staff only: one tenant's usage (default: every tenant's).")

        def validate(self, data):
            if data.get("since") and data.get("until") and data["since"] > data["until"]:
                raise serializers.ValidationError({"since": ["Must not be after `until`."]})
            return data

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
        operation_id="usage_retrieve", summary="Spend by day and by LLM",
        parameters=[FilterSerializer], responses={200: OutputSerializer, **errors(400, 401, 403)},
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        tenant = tenant_of(request)
        if "tenant" in filters.validated_data:
            if tenant is not None:
                raise PermissionDenied("Only staff may ask for another tenant's usage.")
            tenant = Tenant.objects.filter(name=filters.validated_data["tenant"]).first()
            if tenant is None:
                raise serializers.ValidationError({"tenant": ["No tenant with this name."]})
        status_ = None
        if tenant is not None:
            status_ = budgets.status_of(budgets.budget_period_current(tenant=tenant), tenant)
        today = timezone.now().date()
        since = filters.validated_data.get("since") or (status_.starts_at.date() if status_ else today.replace(day=1))
        until = filters.validated_data.get("until") or today
        usage = usage_summary(tenant=tenant, since=since, until=until)
        return Response(self.OutputSerializer({
            "tenant": tenant.name if tenant else None, "since": usage.since, "until": usage.until, "totals": usage.totals,
            "by_day": usage.by_day, "by_llm": usage.by_llm, "budget": status_,
        }).data)


# --- LLMs -----------------------------------------------------------------------------------------

class LlmListApi(ApiBase):
    @extend_schema_serializer(component_name="RoutableLlmList")
    class OutputSerializer(serializers.Serializer):
        class RoutableLlmSerializer(serializers.Serializer):
            name = serializers.CharField()
            provider = serializers.CharField()
            api_base = serializers.CharField()
            api_model = serializers.CharField()
            usd_per_mtok_in = serializers.FloatField(allow_null=True)
            usd_per_mtok_out = serializers.FloatField(allow_null=True)
            usd_per_query = serializers.FloatField(allow_null=True)
            validation_accuracy = serializers.SerializerMethodField(help_text="Mean correctness on the validation prompts it was profiled on.")
            n_validation_outcomes = serializers.IntegerField()
            uses_fallback = serializers.BooleanField(help_text="The strategy (a Routoo-style predictor) has no head for this LLM and scores it with its universal fallback, UniRoute K-means.")

            def get_validation_accuracy(self, llm) -> float:
                return round(1.0 - llm.validation_error, 6)

        routing_state_version = serializers.IntegerField(source="version")
        strategy = serializers.CharField(source="strategy_name")
        llms = RoutableLlmSerializer(many=True)

    @extend_schema(operation_id="llms_list", summary="The LLMs routed to, with prices and profiles", responses={200: OutputSerializer, **errors(401, 503)})
    def get(self, request):
        router = active_router()
        tenant = tenant_of(request)
        llms = list(router.llms)
        if tenant is not None:
            allowed = set(tenant.allowed_llms.values_list("id", flat=True))
            llms = [llm for llm in llms if not allowed or llm.id in allowed]
        return Response(LlmListApi.OutputSerializer({"version": router.version, "strategy_name": router.strategy_name, "llms": llms}).data)


class LlmSerializer(serializers.ModelSerializer):
    class Meta:
        model = LLM
        fields = [
            "name", "provider", "api_base", "api_model", "usd_per_mtok_in", "usd_per_mtok_out", "usd_per_query",
            "params_total_b", "params_active_b", "context_window", "metadata", "is_active", "created_at", "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]


class LlmInputSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    # Validation of values (URL-safe name, non-negative prices, unique name) is the model's, run by
    # the registry services; here only the JSON types are checked.
    name = StrictCharField(max_length=100)
    provider = StrictCharField(required=False, allow_blank=True, max_length=100)
    api_base = StrictCharField(required=False, allow_blank=True, max_length=200)
    api_model = StrictCharField(required=False, allow_blank=True, max_length=200)
    usd_per_mtok_in = StrictFloatField(required=False, allow_null=True)
    usd_per_mtok_out = StrictFloatField(required=False, allow_null=True)
    usd_per_query = StrictFloatField(required=False, allow_null=True)
    params_total_b = StrictFloatField(required=False, allow_null=True)
    params_active_b = StrictFloatField(required=False, allow_null=True)
    context_window = StrictIntegerField(required=False, allow_null=True)
    metadata = serializers.DictField(required=False)
    is_active = serializers.BooleanField(required=False)


class LlmCreateApi(ApiBase):
    permission_classes = [permissions.IsAdminUser]
    InputSerializer = LlmInputSerializer

    @extend_schema_serializer(component_name="RegisteredLlm")
    class OutputSerializer(LlmSerializer):
        profiling_job = serializers.SerializerMethodField(help_text="The job that profiles the LLM (see /api/v1/jobs/{id}).")

        class Meta(LlmSerializer.Meta):
            fields = [*LlmSerializer.Meta.fields, "profiling_job"]

        def get_profiling_job(self, llm) -> int:
            return self.context["profiling_job"].id

    @extend_schema(
        operation_id="llms_create", summary="Register an LLM (staff)",
        description="Registers the LLM and queues its profiling on the active routing state's validation prompts; it becomes routable once profiled.",
        request=LlmInputSerializer, responses={201: OutputSerializer, **errors(400, 401, 403)},
    )
    def post(self, request):
        # LlmCreateApi.… rather than self.…: LlmCollectionApi inherits from two use-cases
        serializer = LlmCreateApi.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        llm = llm_register(**serializer.validated_data)
        job, _ = job_enqueue(kind=Job.Kind.PROFILE_LLM, llm=llm)  # sent to the worker after commit
        return Response(LlmCreateApi.OutputSerializer(llm, context={"profiling_job": job}).data, status=status.HTTP_201_CREATED)


class LlmCollectionApi(LlmListApi, LlmCreateApi):
    """GET lists (tenants and staff), POST registers (staff): two use-cases on one URL."""

    def get_permissions(self):
        use_case = LlmCreateApi if self.request.method == "POST" else LlmListApi
        return [permission() for permission in use_case.permission_classes]


class LlmUpdateApi(ApiBase):
    permission_classes = [permissions.IsAdminUser]

    @extend_schema_serializer(component_name="LlmUpdate")
    class InputSerializer(LlmInputSerializer):
        name = None  # the URL names the LLM; renaming is done in the admin

    @extend_schema(
        operation_id="llms_partial_update", summary="Update an LLM (staff)",
        request=InputSerializer, responses={200: LlmSerializer, **errors(400, 401, 403, 404)},
    )
    def patch(self, request, name):
        llm = LLM.objects.filter(name=name).first()
        if llm is None:
            raise NotFound(f"No LLM named {name!r}.")
        serializer = self.InputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        llm = llm_update(llm=llm, **serializer.validated_data)
        return Response(LlmSerializer(llm).data)


# --- health ---------------------------------------------------------------------------------------

class HealthApi(APIView):
    authentication_classes = []
    permission_classes = [permissions.AllowAny]

    @extend_schema_serializer(component_name="Health")
    class OutputSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=["ok", "degraded", "unavailable"], help_text="unavailable: routing fails (503); degraded: routing works, background jobs do not.")
        database = serializers.DictField()
        routing_state = serializers.DictField()
        broker = serializers.DictField()

    @extend_schema(operation_id="health_retrieve", summary="Database, routing state and broker", responses={200: OutputSerializer, 503: OutputSerializer})
    def get(self, request):
        database, routing_state, broker = _check_database(), _check_routing_state(), _check_broker()
        if not (database["ok"] and routing_state["ok"]):
            overall = "unavailable"
        else:
            overall = "ok" if broker["ok"] else "degraded"
        return Response(
            self.OutputSerializer({"status": overall, "database": database, "routing_state": routing_state, "broker": broker}).data,
            status=status.HTTP_503_SERVICE_UNAVAILABLE if overall == "unavailable" else status.HTTP_200_OK,
        )


def _check_database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True}
    except Exception as exc:  # any failure is the answer here
        return {"ok": False, "error": str(exc)}


def _check_routing_state() -> dict:
    try:
        router = active_router()
    except Exception as exc:
        return {"ok": False, "error": str(exc)}
    return {"ok": True, "version": router.version, "strategy": router.strategy_name, "llms": len(router.llms)}


def _check_broker() -> dict:
    from routerhub.celery import app

    try:
        with app.connection_for_write(url=settings.CELERY_BROKER_URL) as conn:
            conn.ensure_connection(max_retries=1, timeout=settings.ROUTERHUB_HEALTH_BROKER_TIMEOUT_SECONDS)
        return {"ok": True}
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
