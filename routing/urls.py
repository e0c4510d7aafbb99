"""/api/v1/ — the customer API (no trailing slashes: clients POST to /api/v1/route)."""

from django.urls import path

from routing.apis import decisions, health, jobs, llms, usage

app_name = "api"

urlpatterns = [
    path("route", decisions.RouteCreateApi.as_view(), name="route"),
    path("route/<uuid:decision_id>", decisions.DecisionDetailApi.as_view(), name="decision"),
    path("route/<uuid:decision_id>/feedback", decisions.DecisionFeedbackApi.as_view(), name="decision-feedback"),
    path("usage", usage.UsageSummaryApi.as_view(), name="usage"),
    path("llms", llms.LlmCollectionApi.as_view(), name="llms"),
    # LLM names are written as providers write them ("meta-llama/Llama-3.1-70B-Instruct", "qwen2.5:7b"):
    # the rest of the path, slashes included, is the name.
    path("llms/<path:name>", llms.LlmUpdateApi.as_view(), name="llm"),
    path("health", health.HealthApi.as_view(), name="health"),
    path("jobs", jobs.JobCollectionApi.as_view(), name="jobs"),
    path("jobs/<int:job_id>", jobs.JobDetailApi.as_view(), name="job"),
]
