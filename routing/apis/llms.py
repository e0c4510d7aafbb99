"""/api/v1/llms: the routable LLMs (tenants and staff); register or update one (staff)."""

from __future__ import annotations

from django.core.validators import RegexValidator, URLValidator
from django.db import transaction
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, NotFound
from rest_framework.response import Response

from registry.endpoints import API_KEY_ENV_PATTERN
from registry.models import LLM, LLM_FIELDS, LLM_NAME_MAX_LENGTH, llm_name_validator
from registry.selectors import llm_by_name
from registry.services import llm_register, llm_update
from routing.apis.authentication import tenant_of
from routing.apis.base import ApiBase, HasStaffPermissions, errors
from routing.apis.serializers import (
    ErrorSerializer,
    RejectUnknownFieldsMixin,
    StrictCharField,
    StrictFloatField,
    StrictIntegerField,
)
from routing.models import Job
from routing.selectors.routers import active_router
from routing.services.jobs import job_enqueue


class LlmListApi(ApiBase):
    staff_permissions = {"GET": ("registry.view_llm",)}

    @extend_schema_serializer(component_name="RoutableLlmList")
    class OutputSerializer(serializers.Serializer):
        class RoutableLlmSerializer(serializers.Serializer):
            name = serializers.CharField()
            provider = serializers.CharField()
            api_base = serializers.CharField(
                required=False, help_text="Staff only: the endpoint routerhub calls (tenants call routerhub)."
            )
            api_model = serializers.CharField()
            usd_per_mtok_in = serializers.FloatField(allow_null=True)
            usd_per_mtok_out = serializers.FloatField(allow_null=True)
            usd_per_query = serializers.FloatField(allow_null=True)
            validation_accuracy = serializers.SerializerMethodField(
                help_text="Mean correctness on the validation prompts it was profiled on."
            )
            n_validation_outcomes = serializers.IntegerField()
            uses_fallback = serializers.BooleanField(
                help_text="The strategy (a Routoo-style predictor) has no head for this LLM and scores it with its universal fallback, UniRoute K-means."
            )

            def get_validation_accuracy(self, llm) -> float:
                return round(1.0 - llm.validation_error, 6)

            def to_representation(self, llm):
                shown = super().to_representation(llm)
                if not self.context.get("staff"):
                    del shown["api_base"]  # where an LLM is served is the operator's business
                return shown

        routing_state_version = serializers.IntegerField(source="version")
        strategy = serializers.CharField(source="strategy_name")
        llms = RoutableLlmSerializer(many=True)

    @extend_schema(
        operation_id="llms_list",
        summary="The LLMs routed to, with prices and profiles",
        description="Tenants see each LLM's name, prices and profile; staff also its endpoint (api_base).",
        responses={200: OutputSerializer, **errors(401, 503)},
    )
    def get(self, request):
        router = active_router()
        tenant = tenant_of(request)
        llms = list(router.llms)
        if tenant is not None:
            allowed = set(tenant.allowed_llms.values_list("id", flat=True))
            llms = [llm for llm in llms if not allowed or llm.id in allowed]
        return Response(
            LlmListApi.OutputSerializer(
                {"version": router.version, "strategy_name": router.strategy_name, "llms": llms},
                context={"staff": tenant is None},
            ).data
        )


class LlmSerializer(serializers.ModelSerializer):
    class Meta:
        model = LLM
        fields = ["name", *LLM_FIELDS, "has_api_key", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]

    has_api_key = serializers.SerializerMethodField(
        help_text="Whether a key is stored (encrypted) or named; the key itself is never returned."
    )

    def get_has_api_key(self, llm) -> bool:
        return llm.has_api_key


# What the registry's api_base rule asks of the URL's text (registry/endpoints.py), as a pattern the schema can show.
HTTP_URL_WITHOUT_USER = RegexValidator(
    r"^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@]+(?:[/?#].*)?$", "An http:// or https:// URL, with no user:password in it."
)


class LlmInputSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    # The model's rules on each value (the LLM name rule, non-negative prices, an http(s) URL), stated
    # here too so that the schema shows them; what no schema can say (a free name, an endpoint the
    # address rules let through) is the registry services' to check.
    name = StrictCharField(max_length=LLM_NAME_MAX_LENGTH, trim_whitespace=False, validators=[llm_name_validator])
    provider = StrictCharField(required=False, allow_blank=True, max_length=100)
    api_base = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=200,
        validators=[URLValidator(schemes=["http", "https"]), HTTP_URL_WITHOUT_USER],
        help_text="OpenAI-compatible base URL (http or https, no user:password); link-local and cloud-metadata "
        "addresses are refused.",
    )
    api_model = StrictCharField(required=False, allow_blank=True, max_length=200)
    usd_per_mtok_in = StrictFloatField(required=False, allow_null=True, min_value=0)
    usd_per_mtok_out = StrictFloatField(required=False, allow_null=True, min_value=0)
    usd_per_query = StrictFloatField(required=False, allow_null=True, min_value=0)
    params_total_b = StrictFloatField(required=False, allow_null=True, min_value=0)
    params_active_b = StrictFloatField(required=False, allow_null=True, min_value=0)
    context_window = StrictIntegerField(required=False, allow_null=True, min_value=0, max_value=2**31 - 1)
    metadata = serializers.DictField(required=False)
    is_active = serializers.BooleanField(required=False)
    api_key = StrictCharField(
        required=False,
        allow_blank=True,
        write_only=True,
        max_length=2000,
        help_text="The upstream API key: stored encrypted, never returned or logged. An empty string removes it; "
        "so does a change of api_base, or naming another api_key_env, that does not send it again.",
    )
    api_key_env = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=120,
        validators=[RegexValidator(API_KEY_ENV_PATTERN)],
        help_text="Or: the environment variable holding the key; its name must start with ROUTERHUB_LLM_KEY_.",
    )


class NameTaken(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class LlmCreateApi(ApiBase):
    permission_classes = [HasStaffPermissions]
    # Registering queues the LLM's profiling job.
    staff_permissions = {"POST": ("registry.add_llm", "routing.add_job")}
    InputSerializer = LlmInputSerializer

    @extend_schema_serializer(component_name="RegisteredLlm")
    class OutputSerializer(LlmSerializer):
        profiling_job = serializers.SerializerMethodField(
            help_text="The job that profiles the LLM (see /api/v1/jobs/{id})."
        )
        profiling_job_status = serializers.SerializerMethodField(
            help_text="queued: handed to the workers. pending (HTTP 202): the broker could not be reached; the job "
            "is sent by a periodic sweep once it answers."
        )

        class Meta(LlmSerializer.Meta):
            fields = [*LlmSerializer.Meta.fields, "profiling_job", "profiling_job_status"]

        def get_profiling_job(self, llm) -> int:
            return self.context["profiling_job"].id

        def get_profiling_job_status(self, llm) -> str:
            return self.context["profiling_job"].status

    @extend_schema(
        operation_id="llms_create",
        summary="Register an LLM (staff)",
        description="Registers the LLM and queues its profiling on the active routing state's validation prompts; "
        "it becomes routable once profiled. 201: the profiling job is with the workers; 202: the LLM is registered "
        "but the broker could not be reached, so its profiling job is pending and a periodic sweep sends it later.",
        request=LlmInputSerializer,
        responses={
            201: OutputSerializer,
            202: OutputSerializer,
            **errors(400, 401, 403),
            409: OpenApiResponse(ErrorSerializer, description="An LLM of this name is registered already."),
        },
    )
    def post(self, request):
        # LlmCreateApi.… rather than self.…: LlmCollectionApi inherits from two use-cases
        serializer = LlmCreateApi.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        name = serializer.validated_data["name"]
        if llm_by_name(name=name) is not None:
            raise NameTaken(f"An LLM named {name!r} is registered already; change it with PATCH /api/v1/llms/{{name}}.")
        with transaction.atomic():
            llm = llm_register(**serializer.validated_data)
            job, _ = job_enqueue(kind=Job.Kind.PROFILE_LLM, llm=llm)  # sent to the broker after commit
        job.refresh_from_db()  # pending unless the broker took the task
        return Response(
            LlmCreateApi.OutputSerializer(llm, context={"profiling_job": job}).data,
            status=status.HTTP_202_ACCEPTED if job.status == Job.Status.PENDING else status.HTTP_201_CREATED,
        )


class LlmCollectionApi(LlmListApi, LlmCreateApi):
    """GET lists (tenants and staff), POST registers (staff): two use-cases on one URL."""

    staff_permissions = {**LlmListApi.staff_permissions, **LlmCreateApi.staff_permissions}

    def get_permissions(self):
        use_case = LlmCreateApi if self.request.method == "POST" else LlmListApi
        return [permission() for permission in use_case.permission_classes]


class LlmUpdateApi(ApiBase):
    permission_classes = [HasStaffPermissions]
    staff_permissions = {"PATCH": ("registry.change_llm",)}

    @extend_schema_serializer(component_name="LlmUpdate")
    class InputSerializer(LlmInputSerializer):
        name = None  # the URL names the LLM; renaming is done in the admin

    @extend_schema(
        operation_id="llms_partial_update",
        summary="Update an LLM (staff)",
        request=InputSerializer,
        responses={200: LlmSerializer, **errors(400, 401, 403, 404)},
    )
    def patch(self, request, name):
        llm = llm_by_name(name=name)
        if llm is None:
            raise NotFound(f"No LLM named {name!r}.")
        serializer = self.InputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        llm = llm_update(llm=llm, **serializer.validated_data)
        return Response(LlmSerializer(llm).data)
