"""/v1/ — the OpenAI-compatible gateway (no trailing slashes: OpenAI SDKs call /v1/chat/completions)."""

from django.urls import path, re_path

from routing.apis import gateway

app_name = "gateway"

urlpatterns = [
    path("chat/completions", gateway.chat_completions, name="chat-completions"),
    path("models", gateway.models, name="models"),
    re_path(r"^(?P<path>.*)$", gateway.not_found),
]
