"""/api/v1/health: the service's status for anyone (load balancers); database, routing state and broker
details for staff only — error texts name hosts, users and versions an outsider has no business seeing."""

from __future__ import annotations

from celery import current_app
from django.conf import settings
from django.db import connection
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import permissions, serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.response import Response

from routing.apis.base import JsonApiView
from routing.selectors.embeddings import embedding_health
from routing.selectors.routers import active_router

# How long the health check waits for the broker before calling it down.
BROKER_TIMEOUT_SECONDS = 1.0


class HealthApi(JsonApiView):
    # The admin's session tells staff apart; anyone else (API keys included) gets the status only.
    authentication_classes = [SessionAuthentication]
    permission_classes = [permissions.AllowAny]

    @extend_schema_serializer(component_name="Health")
    class OutputSerializer(serializers.Serializer):
        status = serializers.ChoiceField(
            choices=["ok", "degraded", "unavailable"],
            help_text="unavailable: routing fails (503); degraded: routing works, background jobs do not.",
        )
        database = serializers.DictField(required=False, help_text="Staff only.")
        routing_state = serializers.DictField(required=False, help_text="Staff only.")
        broker = serializers.DictField(required=False, help_text="Staff only.")
        embeddings = serializers.DictField(
            required=False,
            help_text="Staff only: the embedder and where route-time embeddings came from across all processes "
            "(in-process caches, the shared cache, computed), with hit rates.",
        )

    @extend_schema(
        operation_id="health_retrieve",
        summary="Service status (details for staff)",
        description="Anyone gets `status`; a staff session also gets the database, routing state and broker checks, "
        "and the embedder's cache figures.",
        responses={200: OutputSerializer, 503: OutputSerializer},
    )
    def get(self, request):
        database, routing_state, broker = _check_database(), _check_routing_state(), _check_broker()
        if not (database["ok"] and routing_state["ok"]):
            overall = "unavailable"
        else:
            overall = "ok" if broker["ok"] else "degraded"
        body = {"status": overall}
        if request.user and request.user.is_staff:
            body.update(database=database, routing_state=routing_state, broker=broker, embeddings=embedding_health())
        return Response(
            self.OutputSerializer(body).data,
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
    try:
        with current_app.connection_for_write(url=settings.CELERY_BROKER_URL) as conn:
            conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
        return {"ok": True}
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
