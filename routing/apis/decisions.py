"""/api/v1/route: choose an LLM for a prompt, read a decision, report feedback on it."""

from __future__ import annotations

import time
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_serializer
from rest_framework import serializers
from rest_framework.response import Response

from routing.apis.authentication import tenant_of
from routing.apis.base import ApiBase, IsTenant, errors
from routing.apis.serializers import (
    AlternativeSerializer,
    BudgetStatusSerializer,
    ChatField,
    LlmRefSerializer,
    RejectUnknownFieldsMixin,
    RouteOptionsSerializer,
    StrictCharField,
    StrictFloatField,
    StrictIntegerField,
    check_text_size,
    represent,
    validated,
)
from routing.models import Decision
from routing.prompt_text import route_input
from routing.selectors.decisions import decision_get
from routing.services.decisions import route_create
from routing.services.feedback import Feedback, decision_feedback
from routing.services.scoring import RouteRequest

# Bounds of feedback numbers: far above any real call, within what the columns hold (a 4-byte integer).
MAX_FEEDBACK_TOKENS = 1_000_000_000
MAX_FEEDBACK_LATENCY_MS = 86_400_000.0  # one day


# Server-Timing's word for where a route's embedding came from (routing/services/embeddings.py).
_EMBED_SOURCES = {"memory": "cached", "shared": "shared-cache"}


class RouteCreateApi(ApiBase):
    permission_classes = [IsTenant]

    def initial(self, request, *args, **kwargs):
        self.started = time.perf_counter()  # before authentication: Server-Timing's "app" covers it
        super().initial(request, *args, **kwargs)

    @extend_schema_serializer(component_name="Route")
    class InputSerializer(RouteOptionsSerializer):
        prompt = StrictCharField(
            required=False,
            trim_whitespace=False,
            help_text="The prompt to route, at most ROUTERHUB_MAX_PROMPT_CHARS characters. Give this or `messages`.",
        )
        messages = ChatField(
            required=False,
            help_text="An OpenAI-format chat, with at least one user message with text: routed on the last such "
            "message plus a bounded amount of the turns before it. At most ROUTERHUB_MAX_MESSAGES messages, whose "
            "text together is at most ROUTERHUB_MAX_PROMPT_CHARS characters.",
        )

        schema_constraints = {"oneOf": [{"required": ["prompt"]}, {"required": ["messages"]}]}

        def validate_prompt(self, value):
            check_text_size(value)  # blank: refused by the field (its schema's pattern)
            return value

        def validate(self, data):
            if ("prompt" in data) == ("messages" in data):
                raise serializers.ValidationError({"prompt": ["Give either `prompt` or `messages` (exactly one)."]})
            return data

    @extend_schema_serializer(component_name="RouteDecision")
    class OutputSerializer(serializers.Serializer):
        decision_id = serializers.UUIDField(source="decision.id")
        llm = LlmRefSerializer(help_text="Send the prompt here.")
        predicted_quality = serializers.FloatField(
            source="decision.predicted_quality",
            help_text="1 − predicted loss: the router's estimate of the chance of a good answer.",
        )
        estimated_cost_usd = serializers.FloatField(source="decision.estimated_cost_usd")
        input_tokens = serializers.IntegerField(
            source="decision.prompt_tokens", help_text="Tokens of the prompt (estimated)."
        )
        expected_output_tokens = serializers.SerializerMethodField()
        lambda_used = serializers.FloatField(source="decision.lambda_used", allow_null=True)
        lambda_reason = serializers.ChoiceField(source="decision.lambda_reason", choices=Decision.LambdaReason.choices)
        strategy = serializers.CharField(source="decision.strategy")
        strategy_params = serializers.DictField(
            help_text="The hyper-parameters of the routing state that decided: chosen by self-tuning on its training "
            "LLMs, or as given."
        )
        routing_state_version = serializers.IntegerField(source="decision.state_version")
        cluster = serializers.IntegerField(
            source="decision.cluster",
            allow_null=True,
            help_text="The prompt's K-means cluster (K-means strategies only).",
        )
        alternatives = AlternativeSerializer(
            source="decision.alternatives", many=True, help_text="The next best allowed LLMs, best first."
        )
        explored = serializers.BooleanField(
            source="decision.explored",
            help_text="True when the tenant's exploration chose an LLM whose estimate is uncertain instead of the "
            "best estimate (`exploited`); false otherwise.",
        )
        exploited = AlternativeSerializer(
            source="decision.exploited",
            allow_null=True,
            help_text="When `explored`: the LLM the estimates alone would have chosen; else null.",
        )
        budget = BudgetStatusSerializer()
        notes = serializers.ListField(child=serializers.CharField())

        def get_expected_output_tokens(self, result) -> int:
            return settings.ROUTERHUB_EXPECTED_OUTPUT_TOKENS

    @extend_schema(
        operation_id="route_create",
        summary="Choose the LLM for a prompt",
        request=InputSerializer,
        responses={200: OutputSerializer, **errors(400, 401, 402, 403, 503)},
    )
    def post(self, request):
        data = validated(self.InputSerializer, request.data)
        routed = route_input(prompt=data.get("prompt"), messages=data.get("messages"))
        result = route_create(
            tenant=tenant_of(request),
            api_key=request.auth,
            request=RouteRequest(
                text=routed.request,
                context=routed.context,
                input_tokens=routed.input_tokens,
                models=data.get("models"),
                lam=data.get("lambda"),
                quality_target=data.get("quality_target"),
                max_cost_usd=data.get("max_cost_usd"),
                strategy=data.get("strategy"),
            ),
        )
        response = Response(represent(self.OutputSerializer, result))
        response["X-Routerhub-Model"] = result.llm.name
        response["X-Routerhub-Decision"] = str(result.decision.id)
        # embed: the prompt's embedding (or a cache hit); route: prediction, λ and selection;
        # budget: reservation + decision row; app: the whole view, authentication to serialised answer.
        response["Server-Timing"] = (
            f'embed;dur={result.embed_ms:.3f};desc="{_EMBED_SOURCES.get(result.embedding_cached, "computed")}", '
            f"route;dur={result.route_ms:.3f}, budget;dur={result.budget_ms:.3f}, "
            f"app;dur={(time.perf_counter() - self.started) * 1e3:.3f}"
        )
        return response


class FeedbackEntrySerializer(serializers.Serializer):
    received_at = serializers.DateTimeField()
    actual_cost_usd = serializers.FloatField(allow_null=True)
    input_tokens = serializers.IntegerField(allow_null=True)
    output_tokens = serializers.IntegerField(allow_null=True)
    latency_ms = serializers.FloatField(allow_null=True)
    quality_score = serializers.FloatField(allow_null=True)
    counted_usd = serializers.FloatField(help_text="What the decision counted once this feedback was applied.")


class FeedbackStateSerializer(serializers.Serializer):
    actual_cost_usd = serializers.FloatField(allow_null=True)
    reported_cost_usd = serializers.FloatField(
        allow_null=True,
        help_text="The cost the feedback implies: actual_cost_usd, or the LLM's prices × the reported tokens.",
    )
    input_tokens = serializers.IntegerField(allow_null=True)
    output_tokens = serializers.IntegerField(allow_null=True)
    latency_ms = serializers.FloatField(allow_null=True)
    quality_score = serializers.FloatField(allow_null=True)
    received_at = serializers.DateTimeField(source="feedback_at")
    history = FeedbackEntrySerializer(
        source="feedback_history.all", many=True, help_text="Every feedback received, oldest first, as sent."
    )


class AttemptSerializer(serializers.Serializer):
    llm = serializers.CharField()
    outcome = serializers.CharField(help_text="ok, timeout, connection_error, http_<status>, client_error, skipped, …")
    status = serializers.IntegerField(allow_null=True, required=False, help_text="The upstream's HTTP status.")
    latency_ms = serializers.FloatField(required=False)
    error = serializers.CharField(required=False, allow_null=True, help_text="Truncated; never holds credentials.")


class GatewayCallSerializer(serializers.Serializer):
    status = serializers.ChoiceField(source="call_status", choices=Decision.CallStatus.choices)
    attempts = AttemptSerializer(many=True, help_text="Each LLM tried, in order; the last one answered (if any).")
    latency_ms = serializers.FloatField(allow_null=True, help_text="From the request's arrival to its last byte.")
    ttft_ms = serializers.FloatField(
        allow_null=True,
        help_text="Streams: until the first chunk reached the client; otherwise until the LLM's answer began.",
    )
    input_tokens = serializers.IntegerField(allow_null=True)
    output_tokens = serializers.IntegerField(allow_null=True)
    cost_usd = serializers.FloatField(
        source="actual_cost_usd", allow_null=True, help_text="The upstream's usage × the LLM's prices."
    )


class DecisionOutputSerializer(serializers.Serializer):
    decision_id = serializers.UUIDField(source="id")
    created_at = serializers.DateTimeField()
    tenant = serializers.CharField(source="tenant.name")
    source = serializers.ChoiceField(choices=Decision.Source.choices)
    llm = LlmRefSerializer()
    predicted_quality = serializers.FloatField(allow_null=True, help_text="Null when the client named the LLM.")
    estimated_cost_usd = serializers.FloatField()
    input_tokens = serializers.IntegerField(
        source="prompt_tokens", help_text="Tokens of the prompt (estimated at routing time)."
    )
    lambda_used = serializers.FloatField(allow_null=True)
    lambda_reason = serializers.ChoiceField(choices=Decision.LambdaReason.choices)
    strategy = serializers.CharField()
    routing_state_version = serializers.IntegerField(source="state_version")
    cluster = serializers.IntegerField(allow_null=True)
    alternatives = AlternativeSerializer(many=True)
    explored = serializers.BooleanField(help_text="Chosen by the tenant's exploration rather than the best estimate.")
    exploited = AlternativeSerializer(
        allow_null=True, help_text="When `explored`: the LLM the estimates alone would have chosen; else null."
    )
    counted_usd = serializers.SerializerMethodField(
        help_text="What this decision counts in the budget now: its estimate, or the reported cost (never below "
        "what the counted prompt tokens cost), within the limit plus any overage."
    )
    feedback = serializers.SerializerMethodField(help_text="What the client reported after its call; null until then.")
    call = serializers.SerializerMethodField(help_text="The gateway's call of the LLM (source gateway); else null.")

    def get_counted_usd(self, decision) -> float:
        return float(decision.reserved_usd + decision.overage_usd)

    @extend_schema_field(GatewayCallSerializer(allow_null=True))
    def get_call(self, decision):
        return GatewayCallSerializer(decision).data if decision.source == Decision.Source.GATEWAY else None

    @extend_schema_field(FeedbackStateSerializer(allow_null=True))
    def get_feedback(self, decision):
        if decision.source == Decision.Source.GATEWAY:
            return None  # the gateway measured the call: what it recorded is under "call"
        return FeedbackStateSerializer(decision).data if decision.feedback_at else None


class DecisionDetailApi(ApiBase):
    staff_permissions = {"GET": ("routing.view_decision",)}
    OutputSerializer = DecisionOutputSerializer

    @extend_schema(
        operation_id="route_retrieve",
        summary="A routing decision",
        responses={200: DecisionOutputSerializer, **errors(401, 404)},
    )
    def get(self, request, decision_id):
        decision = decision_get(decision_id=decision_id, tenant=tenant_of(request))
        return Response(self.OutputSerializer(decision).data)


class FeedbackOutputSerializer(DecisionOutputSerializer):
    notes = serializers.SerializerMethodField(
        help_text="What was recorded differently from what was sent, and why (e.g. a cost below the prompt's)."
    )

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_notes(self, decision):
        return self.context.get("notes", [])


class DecisionFeedbackApi(ApiBase):
    staff_permissions = {"POST": ("routing.change_decision",)}

    @extend_schema_serializer(component_name="Feedback")
    class InputSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
        """What the client learnt of its call: at least one of these fields."""

        actual_cost_usd = StrictFloatField(
            required=False,
            min_value=0,
            help_text="What the call cost (USD), at most ROUTERHUB_FEEDBACK_MAX_COST_USD. Replaces the estimate in "
            "the budget, but never below what the prompt tokens routerhub counted cost at the LLM's prices.",
        )
        input_tokens = StrictIntegerField(required=False, min_value=0, max_value=MAX_FEEDBACK_TOKENS)
        output_tokens = StrictIntegerField(
            required=False,
            min_value=0,
            max_value=MAX_FEEDBACK_TOKENS,
            help_text="Without actual_cost_usd, the cost is recomputed from the LLM's prices and these tokens.",
        )
        latency_ms = StrictFloatField(required=False, min_value=0, max_value=MAX_FEEDBACK_LATENCY_MS)
        quality_score = StrictFloatField(
            required=False,
            min_value=0,
            max_value=1,
            help_text="How good the answer was, 0–1. Stored as an outcome that later refits may use; "
            "a changed score keeps the earlier one in feedback.history.",
        )

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.fields["actual_cost_usd"].max_value = settings.ROUTERHUB_FEEDBACK_MAX_COST_USD
            self.fields["actual_cost_usd"].validators.append(
                MaxValueValidator(settings.ROUTERHUB_FEEDBACK_MAX_COST_USD)
            )

        schema_constraints = {"minProperties": 1}

        def validate(self, data):
            if not data:
                raise serializers.ValidationError(
                    {"non_field_errors": ["Give at least one of: " + ", ".join(self.fields) + "."]}
                )
            return data

    @extend_schema(
        operation_id="route_feedback",
        summary="Report what the routed call cost and how good it was",
        description="Idempotent: sending the same feedback again changes nothing; a later feedback fills in or "
        "corrects fields, and every feedback is kept in feedback.history.",
        request=InputSerializer,
        responses={200: FeedbackOutputSerializer, **errors(400, 401, 404)},
    )
    def post(self, request, decision_id):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        decision = decision_get(decision_id=decision_id, tenant=tenant_of(request))
        if "actual_cost_usd" in data:
            data["actual_cost_usd"] = Decimal(str(data["actual_cost_usd"]))
        result = decision_feedback(decision=decision, feedback=Feedback(**data), api_key=request.auth)
        return Response(FeedbackOutputSerializer(result.decision, context={"notes": result.notes}).data)
