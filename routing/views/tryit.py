"""Try it: type a prompt, move a λ slider, watch the ranking and the choice change.

The page and its JSON endpoint call ``services/previews.route_preview`` — the route API's own
scoring — and write nothing: no decision, no budget spent. The endpoint is for the page's slider
(session login and CSRF token, like the page), not part of the public API or its schema.
"""

from __future__ import annotations

from django.shortcuts import render
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import NotAuthenticated, PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from registry.remote_embeddings import EmbedderUnavailable
from routing.exceptions import NoActiveRoutingState
from routing.models import Tenant
from routing.selection import MAX_LAMBDA
from routing.selectors.tenancy import tenant_by_name
from routing.services.previews import RoutePreview, route_preview
from routing.views.base import PAGE_PERMISSIONS, base_context, dashboard_page, viewer_of
from routing.views.formatting import lam, quality, usd

EXAMPLE = "What is the derivative of x**3 + 2x with respect to x?"
MAX_PROMPT_CHARS = 20_000
ANY_TENANT = "(no tenant: every active LLM)"


def _unrestricted_tenant() -> Tenant:
    """What staff try prompts as when they pick no tenant: no allow-list, no defaults. Never saved;
    ``allowed_llm_ids`` is the attribute the scoring service reads instead of the tenant's rows."""
    tenant = Tenant(name=ANY_TENANT, budget_usd=0)
    tenant.allowed_llm_ids = frozenset()
    return tenant


def tenant_to_try(viewer, name: str | None) -> Tenant:
    """The tenant a prompt is tried as: a tenant user's own; for staff the one named (with
    ``routing.view_tenant``: it shows the tenant's allowed LLMs and defaults at work), or none."""
    if not viewer.is_staff:
        if name and name != viewer.tenant.name:
            raise PermissionDenied("Only staff may try prompts as another tenant.")
        return viewer.tenant
    if name and not viewer.may_see("tenants"):
        raise PermissionDenied("Trying prompts as a tenant needs the permission routing.view_tenant.")
    if name:
        tenant = tenant_by_name(name=name)
        if tenant is None:
            raise serializers.ValidationError({"tenant": ["No tenant with this name."]})
        return tenant
    return _unrestricted_tenant()


@dashboard_page("try")
def try_page(request):
    viewer = request.viewer
    prompt = (request.POST.get("prompt") if request.method == "POST" else None) or EXAMPLE
    lam_text = request.POST.get("lambda", "0") if request.method == "POST" else "0"
    preview, error = None, None
    try:
        cost_weight = float(lam_text)
        if not 0 <= cost_weight <= MAX_LAMBDA:  # NaN fails too
            raise ValueError
    except ValueError:
        cost_weight, error = 0.0, f"λ must be a number from 0 to {MAX_LAMBDA:g}."
    tenant_name = request.POST.get("tenant") or request.GET.get("tenant") or ""
    try:
        if len(prompt) > MAX_PROMPT_CHARS:
            raise serializers.ValidationError({"prompt": [f"At most {MAX_PROMPT_CHARS:,} characters."]})
        preview = route_preview(tenant=tenant_to_try(viewer, tenant_name), prompt=prompt, lam=cost_weight)
    except NoActiveRoutingState as exc:
        error = f"Routing is not available yet: {exc}."
    except EmbedderUnavailable as exc:
        error = f"{exc} Try again shortly."
    except PermissionDenied as exc:
        error = str(exc.detail)
    except serializers.ValidationError as exc:
        error = " ".join(f"{field}: {' '.join(map(str, messages))}" for field, messages in exc.detail.items())
    context = base_context(
        request,
        page="try",
        title="Try it",
        prompt=prompt,
        lam=cost_weight,
        preview=preview,
        error=error,
        tenant_name=tenant_name,
        tenants_tryable=viewer.may_see("tenants"),
    )
    return render(request, "dashboard/try.html", context)


class IsDashboardUser(BasePermission):
    """Whoever may open the Try it page (``routing/views/base.PAGE_PERMISSIONS``)."""

    def has_permission(self, request, view):
        if not request.user or not request.user.is_authenticated:
            raise NotAuthenticated("Log in to the dashboard first.")
        if viewer_of(request, "try") is None:
            if request.user.is_staff:
                raise PermissionDenied(
                    "Your staff account lacks the permission(s) Try it needs: "
                    + ", ".join(PAGE_PERMISSIONS["try"])
                    + "."
                )
            raise PermissionDenied("This account is not linked to a tenant.")
        return True


class RoutePreviewApi(APIView):
    """POST {"prompt", "lambda", "tenant"?} → the ranking at that λ (JSON). Session login only."""

    schema = None  # the page's helper, not the public API
    authentication_classes = [SessionAuthentication]
    permission_classes = [IsDashboardUser]

    class InputSerializer(serializers.Serializer):
        prompt = serializers.CharField(max_length=MAX_PROMPT_CHARS, trim_whitespace=False)
        # "lambda" is a keyword: the field is declared below under its JSON name
        tenant = serializers.CharField(required=False, allow_blank=True, max_length=100)

        def get_fields(self):
            fields = super().get_fields()
            fields["lambda"] = serializers.FloatField(min_value=0.0, max_value=MAX_LAMBDA)
            return fields

    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        viewer = viewer_of(request, "try")
        tenant = tenant_to_try(viewer, data.validated_data.get("tenant"))
        preview = route_preview(tenant=tenant, prompt=data.validated_data["prompt"], lam=data.validated_data["lambda"])
        return Response(preview_json(preview))


def preview_json(preview: RoutePreview) -> dict:
    return {
        "lambda": preview.lam,
        "lambda_text": lam(preview.lam),
        "chosen": preview.chosen,
        "cluster": preview.cluster,
        "lambda_range": list(preview.lambda_range),
        "ranking": [
            {
                "name": r.name,
                "predicted_quality": r.predicted_quality,
                "estimated_cost_usd": r.estimated_cost_usd,
                "objective": r.objective,
                "allowed": r.allowed,
                "predicted_quality_text": quality(r.predicted_quality),
                "estimated_cost_text": usd(r.estimated_cost_usd),
                "objective_text": f"{r.objective:.3f}",
            }
            for r in preview.ranking
        ],
    }
