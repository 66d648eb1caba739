//! A service's OpenAPI 3.1 document: the paths its handlers declare (`utoipa::path` on the
//! handlers, with their own request and answer types), completed with what every service
//! shares — the problem+json answers every route may give, the catalogue of problem types with
//! their meaning and whether to retry, the signed identity, and the health, metrics and
//! document routes — so the document says every status a route can answer.

use serde_json::{json, Map, Value};

use crate::ProblemKind;

/// Statuses any route may answer, whatever it does (`serve`'s own limits and failures).
const COMMON_STATUSES: &[u16] = &[400, 404, 405, 413, 414, 415, 422, 431, 500, 503];

/// `doc` completed for the service `name`. `signed`: its routes need the signed identity the
/// gateway and the shop's parts send (401 otherwise).
pub fn document(doc: utoipa::openapi::OpenApi, name: &str, signed: bool) -> Value {
    let mut doc = serde_json::to_value(doc).unwrap_or_else(|_| json!({}));
    doc["info"] = json!({
        "title": format!("minimall {name}"),
        "version": env!("CARGO_PKG_VERSION"),
        "description": catalogue_text(),
    });
    let schemas = &mut doc["components"]["schemas"];
    if !schemas.is_object() {
        *schemas = json!({});
    }
    schemas["Problem"] = problem_schema();
    doc["x-problems"] = Value::Array(ProblemKind::ALL.iter().map(|k| problem_entry(*k)).collect());
    let mut statuses = COMMON_STATUSES.to_vec();
    if signed {
        statuses.push(401);
        statuses.push(403);
        doc["components"]["securitySchemes"] = json!({
            "actor": {"type": "apiKey", "in": "header", "name": crate::ACTOR_HEADER,
                      "description": "who calls: customer:<name>, seller:<name> or system:<name>"},
            "proof": {"type": "apiKey", "in": "header", "name": crate::PROOF_HEADER,
                      "description": "<expiry>.<hex HMAC-SHA256 of the actor and expiry> with the shop's identity secret, valid 60 s"}
        });
        doc["security"] = json!([{"actor": [], "proof": []}]);
    }
    add_statuses(&mut doc, &statuses);
    add_service_routes(&mut doc);
    doc
}

/// Adds `statuses` (problem answers) to every operation that does not declare them.
pub fn add_statuses(doc: &mut Value, statuses: &[u16]) {
    for path in doc["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|p| p.values_mut())
    {
        for operation in path
            .as_object_mut()
            .into_iter()
            .flat_map(|o| o.values_mut())
        {
            add_problems(operation, statuses);
        }
    }
}

/// Every operation says the problems it may answer with: those it declares, and the common ones.
fn add_problems(operation: &mut Value, statuses: &[u16]) {
    let responses = &mut operation["responses"];
    if !responses.is_object() {
        *responses = json!({});
    }
    for status in statuses {
        let key = status.to_string();
        if responses.get(&key).is_none() {
            responses[&key] = problem_response(*status);
        }
    }
    // Declared problems answer problem+json.
    if let Some(responses) = responses.as_object_mut() {
        for (status, response) in responses.iter_mut() {
            if status.starts_with('4') || status.starts_with('5') {
                let description = response["description"].clone();
                *response = problem_response(status.parse().unwrap_or(500));
                if description.as_str().is_some_and(|d| !d.is_empty()) {
                    response["description"] = description;
                }
            }
        }
    }
}

fn problem_response(status: u16) -> Value {
    let kinds: Vec<&str> = ProblemKind::ALL
        .iter()
        .filter(|k| k.status().as_u16() == status)
        .map(|k| k.slug())
        .collect();
    let mut response = json!({
        "description": format!("a problem: {}", kinds.join(", ")),
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    });
    if status == 503 || status == 429 {
        response["headers"] = json!({"Retry-After": {
            "description": "seconds after which a retry may succeed",
            "schema": {"type": "integer", "minimum": 0}
        }});
    }
    response
}

fn problem_schema() -> Value {
    let types: Vec<String> = ProblemKind::ALL
        .iter()
        .map(|k| format!("/problems/{}", k.slug()))
        .collect();
    json!({
        "type": "object",
        "description": "An error (RFC 9457): its `type` is one of the problems listed in `x-problems`.",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string", "enum": types},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "field": {"type": "string", "description": "the request field at fault (422)"}
        }
    })
}

fn problem_entry(kind: ProblemKind) -> Value {
    json!({
        "type": format!("/problems/{}", kind.slug()),
        "status": kind.status().as_u16(),
        "title": kind.title(),
        "meaning": kind.meaning(),
        "retry": kind.retry(),
    })
}

/// The problem catalogue as text, for the document's description.
fn catalogue_text() -> String {
    let mut text = String::from(
        "Errors are `application/problem+json`. Their types:\n\n| type | status | retry | meaning |\n|---|---|---|---|\n",
    );
    for kind in ProblemKind::ALL {
        let retry = if kind.retry() { "yes" } else { "no" };
        text.push_str(&format!(
            "| `/problems/{}` | {} | {retry} | {} |\n",
            kind.slug(),
            kind.status().as_u16(),
            kind.meaning()
        ));
    }
    text
}

/// The routes `serve` adds to every service: health, metrics, this document.
fn add_service_routes(doc: &mut Value) {
    let paths = doc["paths"]
        .as_object_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let text = |description: &str| json!({"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}});
    let open = |summary: &str, ok: Value, unavailable: bool| {
        let mut responses = Map::new();
        responses.insert("200".into(), ok);
        if unavailable {
            responses.insert("503".into(), problem_response(503));
        }
        json!({"get": {"summary": summary, "tags": ["operations"], "security": [],
                       "responses": responses}})
    };
    let mut all = Map::new();
    all.insert(
        "/health/live".into(),
        open(
            "Liveness: 503 wedged when the service should be restarted",
            text("live"),
            true,
        ),
    );
    all.insert(
        "/health/ready".into(),
        open(
            "Readiness: 503 while it cannot serve (catching up, store away, stopping)",
            text("ready"),
            true,
        ),
    );
    all.insert(
        "/metrics".into(),
        open(
            "Prometheus metrics",
            text("metrics in the Prometheus text format"),
            false,
        ),
    );
    all.insert(
        "/openapi.json".into(),
        open(
            "This document",
            json!({"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}),
            false,
        ),
    );
    all.extend(paths);
    doc["paths"] = Value::Object(all);
}
