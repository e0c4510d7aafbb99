"""OpenAPI post-processing (settings ``SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]``): the error
answers every operation can give, documented once rather than on each view, and a request body
marked required wherever its schema asks for at least one field.

Which errors can happen follows from how an operation is reached: any authenticated operation can
answer 401, 403 and 429 (rate limits); one with a JSON body 400, 413 and 415; one with a path
parameter 404 (no such object, or a path that matches no route). All have the shape of
``#/components/schemas/Error`` (``routing/apis/errors.py``).
"""

from __future__ import annotations

from routing.json_checks import MAX_DEPTH

DESCRIPTIONS = {
    "400": "Invalid input; `error.fields` names each bad field. Besides what each field's schema says, anywhere in "
    "a JSON body: no string or key may hold a NUL character (U+0000) or a lone UTF-16 surrogate, no number may be "
    "non-finite or an integer beyond 64 bits, no array or object may hold more than 10,000 items, and arrays and "
    f"objects nest at most {MAX_DEPTH} levels deep (routing/json_checks.py).",
    "401": "Missing, unknown or revoked API key, or no staff session.",
    "403": "Not allowed for this caller (a tenant key on a staff operation, a staff user without the permission).",
    "404": "No such object (or no route for this path).",
    "413": "The request body is over ROUTERHUB_MAX_REQUEST_BYTES.",
    "415": "The body is not JSON (Content-Type must be application/json).",
    "429": "Too many requests for this API key, or too many failed authentications from this address; see Retry-After.",
}
ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
METHODS = ("get", "post", "put", "patch", "delete")


# OpenAPI links: what one operation's answer lets a client call next (clients and test generators
# such as Schemathesis follow them to reach real objects).
LINKS = {
    ("route_create", "200"): {
        "GetDecision": {"operationId": "route_retrieve", "parameters": {"decision_id": "$response.body#/decision_id"}},
        "GiveFeedback": {
            "operationId": "route_feedback",
            "parameters": {"decision_id": "$response.body#/decision_id"},
        },
    },
    ("llms_create", "201"): {
        "UpdateLlm": {"operationId": "llms_partial_update", "parameters": {"name": "$response.body#/name"}},
        "GetProfilingJob": {"operationId": "jobs_retrieve", "parameters": {"job_id": "$response.body#/profiling_job"}},
    },
    ("jobs_create", "202"): {
        "GetJob": {"operationId": "jobs_retrieve", "parameters": {"job_id": "$response.body#/job/id"}},
    },
}


def add_error_responses(result, generator, request, public):
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in METHODS:
                continue
            codes = []
            security = operation.get("security", [])
            if security and {} not in security:  # "{}": anonymous callers are answered too
                codes += ["401", "403", "429"]
            if "requestBody" in operation:
                codes += ["400", "413", "415"]
            if "{" in path:
                codes += ["404"]
            if "requestBody" in operation and _asks_for_a_field(operation["requestBody"], result):
                operation["requestBody"]["required"] = True  # an absent body is an empty one: refused
            responses = operation.setdefault("responses", {})
            for (operation_id, code), links in LINKS.items():
                if operation.get("operationId") == operation_id and code in responses:
                    responses[code]["links"] = links
            for code in codes:
                responses.setdefault(code, {"content": ERROR, "description": DESCRIPTIONS[code]})
            # A query-string filter can be invalid too.
            if any(p.get("in") == "query" for p in operation.get("parameters", [])):
                responses.setdefault("400", {"content": ERROR, "description": DESCRIPTIONS["400"]})
    return result


def _asks_for_a_field(body: dict, result: dict) -> bool:
    schema = body["content"]["application/json"]["schema"]
    if "$ref" in schema:
        schema = result["components"]["schemas"][schema["$ref"].rpartition("/")[2]]
    return bool(schema.get("required") or schema.get("minProperties") or schema.get("oneOf"))
