"""The OpenAPI 3 schema validates without warnings, and the docs page serves it."""

import pytest
import yaml
from django.core.management import call_command
from django.test import Client


def test_openapi_schema_validates_without_warnings(tmp_path):
    path = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(path))
    schema = yaml.safe_load(path.read_text())
    paths = schema["paths"]
    assert {
        "/api/v1/route",
        "/api/v1/route/{decision_id}",
        "/api/v1/route/{decision_id}/feedback",
        "/api/v1/usage",
        "/api/v1/llms",
        "/api/v1/llms/{name}",
        "/api/v1/health",
    } <= set(paths)
    route = paths["/api/v1/route"]["post"]
    assert {"200", "400", "401", "402", "503"} <= set(route["responses"])
    assert {"ApiKey"} <= {name for requirement in route["security"] for name in requirement}
    request = schema["components"]["schemas"]["RouteRequest"]["properties"]
    assert {"prompt", "messages", "models", "lambda", "quality_target", "max_cost_usd", "strategy"} <= set(request)


@pytest.mark.django_db
def test_docs_page_and_schema_are_served():
    client = Client()
    assert client.get("/api/schema/").status_code == 200
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()
