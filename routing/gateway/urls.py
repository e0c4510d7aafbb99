"""/v1/ — the OpenAI-compatible gateway (no trailing slashes: OpenAI SDKs call /v1/chat/completions)."""

from django.urls import path, re_path

from routing.gateway import views

app_name = "gateway"

urlpatterns = [
    path("chat/completions", views.chat_completions, name="chat-completions"),
    path("models", views.models, name="models"),
    re_path(r"^(?P<path>.*)$", views.not_found),
]
