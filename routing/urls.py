"""/api/v1/ — the customer API (no trailing slashes: clients POST to /api/v1/route)."""

from django.urls import path

from routing import apis, job_apis

app_name = "api"

urlpatterns = [
    path("route", apis.RouteCreateApi.as_view(), name="route"),
    path("route/<uuid:decision_id>", apis.DecisionDetailApi.as_view(), name="decision"),
    path("route/<uuid:decision_id>/feedback", apis.DecisionFeedbackApi.as_view(), name="decision-feedback"),
    path("usage", apis.UsageSummaryApi.as_view(), name="usage"),
    path("llms", apis.LlmCollectionApi.as_view(), name="llms"),
    path("llms/<str:name>", apis.LlmUpdateApi.as_view(), name="llm"),
    path("health", apis.HealthApi.as_view(), name="health"),
    path("jobs", job_apis.JobCollectionApi.as_view(), name="jobs"),
    path("jobs/<int:job_id>", job_apis.JobDetailApi.as_view(), name="job"),
]
