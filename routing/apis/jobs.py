"""/api/v1/jobs — the staff API for background jobs: list, inspect, and queue profiling or refits.

Staff only (the admin's session), with the Django permissions view_job (read) and add_job (queue). Queueing goes through ``routing.services.jobs``: the task is
sent after the transaction commits, and asking for a job already queued or running returns that job
(``created`` false) instead of doing the work twice.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from registry.selectors import llm_by_name, prompt_set_by_name
from routing.apis.base import StaffApi
from routing.apis.serializers import RejectUnknownFieldsMixin, StrictCharField, StrictFloatField, StrictIntegerField
from routing.models import Job
from routing.profiling.graders import GRADERS, JudgeGrader
from routing.selectors.jobs import job_get, job_list
from routing.services import jobs
from routing.services.profiling import ProfilingOptions
from routing.strategies import STRATEGIES


class JobSerializer(serializers.ModelSerializer):
    llm = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    state_version = serializers.IntegerField(source="state.version", read_only=True, allow_null=True, default=None)

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "llm",
            "status",
            "progress_done",
            "progress_total",
            "attempts",
            "arguments",
            "result",
            "error",
            "state_version",
            "created_at",
            "started_at",
            "finished_at",
            "updated_at",
        ]


class JobListApi(StaffApi):
    staff_permissions = {"GET": ("routing.view_job",)}

    class FilterSerializer(serializers.Serializer):
        kind = serializers.ChoiceField(choices=Job.Kind.choices, required=False)
        status = serializers.ChoiceField(choices=Job.Status.choices, required=False)
        llm = StrictCharField(required=False)
        limit = serializers.IntegerField(required=False, min_value=1, max_value=500, default=50)

    @extend_schema(
        operation_id="jobs_list",
        summary="Background jobs, newest first (staff)",
        parameters=[FilterSerializer],
        responses={200: JobSerializer(many=True)},
    )
    def get(self, request):
        # A plain dict: from the QueryDict, DRF takes `?kind=` for "not given" instead of refusing it.
        filters = self.FilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        found = job_list(
            kind=data.get("kind"), status=data.get("status"), llm_name=data.get("llm"), limit=data["limit"]
        )
        return Response(JobSerializer(found, many=True).data)


class ProfilingArgumentsSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    """profile_llm / reprofile_all: how to profile; each option left out takes its default (routing/profiling/services.py)."""

    concurrency = StrictIntegerField(required=False, min_value=1, max_value=256)
    timeout_seconds = StrictFloatField(required=False, min_value=0.001, max_value=3600)
    max_attempts = StrictIntegerField(required=False, min_value=1, max_value=100)
    backoff_seconds = StrictFloatField(required=False, min_value=0, max_value=600)
    max_tokens = StrictIntegerField(required=False, min_value=1, max_value=1_000_000)
    max_cost_usd = StrictFloatField(required=False, allow_null=True, min_value=0)
    grader = serializers.ChoiceField(choices=[], required=False, allow_null=True)
    refresh_older_than_days = StrictFloatField(required=False, allow_null=True, min_value=0, max_value=36500)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["grader"].choices = sorted(
            {*GRADERS, JudgeGrader.name}
        )  # registered at start-up, after this module's import


class JobCreateApi(StaffApi):
    staff_permissions = {"POST": ("routing.add_job",)}

    class InputSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
        # Profiling on a validation set is started where its cost estimate is shown first: the
        # profile_validation_set command and the tenant admin's action.
        kind = serializers.ChoiceField(
            choices=[choice for choice in Job.Kind.choices if choice[0] != Job.Kind.PROFILE_VALIDATION_SET]
        )
        llm = StrictCharField(required=False, help_text="profile_llm: the LLM's name.")
        arguments = ProfilingArgumentsSerializer(required=False)
        prompt_set = StrictCharField(required=False, help_text="refit: the prompt set (default: the active state's).")
        strategy = serializers.ChoiceField(
            choices=sorted(STRATEGIES), required=False, help_text="refit: the strategy (default: the active state's)."
        )
        params = serializers.DictField(required=False, help_text="refit: the strategy's hyper-parameters.")

        # Which fields go with which kind. ("pattern", not "enum": the schema's enum post-processing would
        # take each one-value enum for a choice set of its own.)
        _REFIT_ONLY = [{"required": [name]} for name in ("prompt_set", "strategy", "params")]
        schema_constraints = {
            "oneOf": [
                {
                    "properties": {"kind": {"pattern": f"^{Job.Kind.PROFILE_LLM}$"}},
                    "required": ["llm"],
                    "not": {"anyOf": _REFIT_ONLY},
                },
                {
                    "properties": {"kind": {"pattern": f"^{Job.Kind.REPROFILE_ALL}$"}},
                    "not": {"anyOf": [{"required": ["llm"]}, *_REFIT_ONLY]},
                },
                {
                    "properties": {"kind": {"pattern": f"^{Job.Kind.REFIT}$"}, "arguments": {"maxProperties": 0}},
                    "not": {"required": ["llm"]},
                },
            ]
        }

        def validate(self, data):
            kind = data["kind"]
            if kind == Job.Kind.PROFILE_LLM:
                if "llm" not in data:
                    raise serializers.ValidationError({"llm": ["Name the LLM to profile."]})
                data["llm"] = llm_by_name(name=data["llm"]) or _fail("llm", f"No LLM named {data['llm']!r}.")
            elif "llm" in data:
                raise serializers.ValidationError({"llm": ["Only profile_llm jobs take an LLM."]})
            if kind == Job.Kind.REFIT:
                if data.get("arguments"):
                    raise serializers.ValidationError(
                        {"arguments": ["A refit takes prompt_set, strategy and params instead."]}
                    )
                if "prompt_set" in data:
                    data["prompt_set"] = prompt_set_by_name(name=data["prompt_set"]) or _fail(
                        "prompt_set", f"No prompt set named {data['prompt_set']!r}."
                    )
            else:
                for field in ("prompt_set", "strategy", "params"):
                    if field in data:
                        raise serializers.ValidationError({field: ["Only refit jobs take this."]})
                try:
                    ProfilingOptions.from_arguments(data.get("arguments"))
                except (TypeError, ValueError) as exc:
                    raise serializers.ValidationError({"arguments": [str(exc)]}) from None
            return data

    class OutputSerializer(serializers.Serializer):
        created = serializers.BooleanField(
            help_text="False: a job of this kind (for this LLM) was already queued or running; that job is returned."
        )
        job = JobSerializer()

    @extend_schema(
        operation_id="jobs_create",
        summary="Queue profiling, re-profiling or a refit (staff)",
        request=InputSerializer,
        responses={202: OutputSerializer},
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if data["kind"] == Job.Kind.REFIT:
            prompt_set = data.get("prompt_set")
            job, created = jobs.routing_state_refit_enqueue(
                prompt_set_id=prompt_set.id if prompt_set else None,
                strategy=data.get("strategy"),
                params=data.get("params"),
            )
        else:
            job, created = jobs.job_enqueue(kind=data["kind"], llm=data.get("llm"), arguments=data.get("arguments", {}))
        return Response(self.OutputSerializer({"created": created, "job": job}).data, status=status.HTTP_202_ACCEPTED)


class JobCollectionApi(JobListApi, JobCreateApi):
    """GET lists jobs, POST queues one: two use-cases on one URL."""

    staff_permissions = {**JobListApi.staff_permissions, **JobCreateApi.staff_permissions}


class JobDetailApi(StaffApi):
    staff_permissions = {"GET": ("routing.view_job",)}

    @extend_schema(
        operation_id="jobs_retrieve",
        summary="One background job and its progress (staff)",
        parameters=[OpenApiParameter("job_id", int, OpenApiParameter.PATH)],
        responses={200: JobSerializer},
    )
    def get(self, request, job_id: int):
        job = job_get(job_id=job_id)
        if job is None:
            raise NotFound(f"No job {job_id}.")
        return Response(JobSerializer(job).data)


def _fail(field: str, message: str):
    raise serializers.ValidationError({field: [message]})
