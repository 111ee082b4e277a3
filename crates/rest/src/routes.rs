//! The route table: one entry per operation, from which both the axum
//! router and the OpenAPI description are built, so the description can
//! only list routes that exist.
//!
//! Depends on the handler modules and axum only.

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any, delete, get, post, put};
use serde_json::{Map, Value, json};

use crate::http::{DATACITE_JSON, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use crate::{Shared, error, metadata, schemas};

/// Where a parameter goes.
#[derive(Clone, Copy)]
enum In {
    Path,
    Query,
    Header,
}

/// One parameter of an operation.
struct Param {
    name: &'static str,
    place: In,
    required: bool,
    integer: bool,
    description: &'static str,
}

/// One part of a multipart request body.
struct Part {
    name: &'static str,
    required: bool,
    description: &'static str,
}

/// One documented response.
struct Resp {
    status: &'static str,
    description: &'static str,
    content: &'static [&'static str],
    headers: &'static [&'static str],
}

/// One operation: its route, its handler and its description.
struct Route {
    path: &'static str,
    method: &'static str,
    operation_id: &'static str,
    summary: &'static str,
    /// Also answer with a trailing slash, as MetaStore clients send
    /// `…/schemas/`.
    slash: bool,
    params: &'static [Param],
    parts: &'static [Part],
    responses: &'static [Resp],
    handler: fn() -> MethodRouter<Shared>,
}

const fn query(name: &'static str, integer: bool, description: &'static str) -> Param {
    Param {
        name,
        place: In::Query,
        required: false,
        integer,
        description,
    }
}

const fn path(name: &'static str, description: &'static str) -> Param {
    Param {
        name,
        place: In::Path,
        required: true,
        integer: false,
        description,
    }
}

const IF_MATCH: Param = Param {
    name: "If-Match",
    place: In::Header,
    required: true,
    integer: false,
    description: "The ETag of the current version (428 without, 412 when stale).",
};
const ACCEPT: Param = Param {
    name: "Accept",
    place: In::Header,
    required: false,
    integer: false,
    description: "application/vnd.datacite.org+json for the record; application/xml or application/json for the document.",
};
const VERSION: Param = query(
    "version",
    true,
    "A version number (default: the current one).",
);
const PAGE: Param = query("page", true, "Page number, from 0.");
const SIZE: Param = query("size", true, "Entries per page, 1 to 1000 (default 20).");

const JSON: &[&str] = &["application/json"];
const PROBLEM: &[&str] = &["application/problem+json"];
const WRITTEN: &[&str] = &["Location", "ETag"];

const fn problem(status: &'static str, description: &'static str) -> Resp {
    Resp {
        status,
        description,
        content: PROBLEM,
        headers: &[],
    }
}

const LISTED: Resp = Resp {
    status: "200",
    description: "The records of the page; Content-Range gives first-last/total (*/total when empty).",
    content: JSON,
    headers: &["Content-Range"],
};
const BAD: Resp = problem("400", "Malformed query, multipart body or record JSON.");
const UNAUTHORIZED: Resp = problem("401", "A token is needed (when tokens are configured).");
const FORBIDDEN: Resp = problem("403", "The ACL does not grant the permission needed.");
const NOT_FOUND: Resp = problem("404", "No such schema, record or version.");
const NOT_ACCEPTABLE: Resp = problem("406", "Accept names no type this resource has.");
const PRECONDITION_FAILED: Resp = problem("412", "If-Match is not the current version's ETag.");
const TOO_LARGE: Resp = problem("413", "The body is over the configured limit.");
const UNSUPPORTED: Resp = problem("415", "The body is not multipart/form-data.");
const UNPROCESSABLE: Resp = problem(
    "422",
    "The document is invalid (the validator's message), the schema does not compile, or the record names an unknown schema.",
);
const PRECONDITION_REQUIRED: Resp = problem("428", "If-Match is missing.");
const GOT_ONE: Resp = Resp {
    status: "200",
    description: "The DataCite record (Accept: application/vnd.datacite.org+json) or the document.",
    content: &[DATACITE_JSON, "application/xml", "application/json"],
    headers: &["ETag", "Location"],
};
const UPDATED: Resp = Resp {
    status: "200",
    description: "The record of the new (or unchanged current) version.",
    content: JSON,
    headers: WRITTEN,
};
const CREATED: Resp = Resp {
    status: "201",
    description: "The record of version 1.",
    content: JSON,
    headers: WRITTEN,
};

const RECORD_PART: Part = Part {
    name: "record",
    required: true,
    description: "The DataCite record (JSON).",
};

static ROUTES: &[Route] = &[
    Route {
        path: "/api/v2/schemas",
        method: "get",
        operation_id: "listSchemas",
        summary: "The current version of every schema, or every version of one schemaId (current first).",
        slash: true,
        params: &[
            query("schemaId", false, "Only this schema, all its versions."),
            query(
                "from",
                false,
                "Only versions created at or after this instant.",
            ),
            query(
                "until",
                false,
                "Only versions created at or before this instant.",
            ),
            PAGE,
            SIZE,
        ],
        parts: &[],
        responses: &[LISTED, BAD, UNAUTHORIZED],
        handler: || get(schemas::list),
    },
    Route {
        path: "/api/v2/schemas",
        method: "post",
        operation_id: "createSchema",
        summary: "Registers a schema (XSD or JSON Schema) with its record; the record's id is the schemaId.",
        slash: true,
        params: &[],
        parts: &[
            Part {
                name: "schema",
                required: true,
                description: "The schema document (XSD or JSON Schema).",
            },
            RECORD_PART,
        ],
        responses: &[
            CREATED,
            BAD,
            UNAUTHORIZED,
            problem("409", "The schemaId is taken."),
            TOO_LARGE,
            UNSUPPORTED,
            UNPROCESSABLE,
        ],
        handler: || post(schemas::create),
    },
    Route {
        path: "/api/v2/schemas/{schemaId}",
        method: "get",
        operation_id: "getSchema",
        summary: "A schema's record or document, by Accept.",
        slash: false,
        params: &[path("schemaId", "The schema."), VERSION, ACCEPT],
        parts: &[],
        responses: &[GOT_ONE, BAD, UNAUTHORIZED, NOT_FOUND, NOT_ACCEPTABLE],
        handler: || get(schemas::get_one),
    },
    Route {
        path: "/api/v2/schemas/{schemaId}",
        method: "put",
        operation_id: "updateSchema",
        summary: "Adds a schema version from a new document and/or record.",
        slash: false,
        params: &[path("schemaId", "The schema."), IF_MATCH],
        parts: &[
            Part {
                name: "schema",
                required: false,
                description: "The new schema document (default: the current one).",
            },
            Part {
                name: "record",
                required: false,
                description: "The new record (default: the current one).",
            },
        ],
        responses: &[
            UPDATED,
            BAD,
            UNAUTHORIZED,
            FORBIDDEN,
            NOT_FOUND,
            PRECONDITION_FAILED,
            TOO_LARGE,
            UNSUPPORTED,
            UNPROCESSABLE,
            PRECONDITION_REQUIRED,
        ],
        handler: || put(schemas::update),
    },
    Route {
        path: "/api/v2/schemas/{schemaId}/validate",
        method: "post",
        operation_id: "validateDocument",
        summary: "Validates a document against a schema version.",
        slash: false,
        params: &[path("schemaId", "The schema."), VERSION],
        parts: &[Part {
            name: "document",
            required: true,
            description: "The document to validate.",
        }],
        responses: &[
            Resp {
                status: "204",
                description: "The document is valid.",
                content: &[],
                headers: &[],
            },
            BAD,
            NOT_FOUND,
            TOO_LARGE,
            UNSUPPORTED,
            UNPROCESSABLE,
        ],
        handler: || post(schemas::validate),
    },
    Route {
        path: "/api/v2/metadata",
        method: "get",
        operation_id: "listMetadata",
        summary: "Current metadata records matching every filter given; with one id, every version of it (current first).",
        slash: true,
        params: &[
            query("id", false, "Record id (repeatable)."),
            query(
                "resourceId",
                false,
                "Only records IS_METADATA_FOR this resource (repeatable; also spelled resoureId).",
            ),
            query(
                "schemaId",
                false,
                "Only records of this schema (repeatable).",
            ),
            query(
                "from",
                false,
                "Only records last changed at or after this instant.",
            ),
            query(
                "until",
                false,
                "Only records last changed at or before this instant.",
            ),
            PAGE,
            SIZE,
        ],
        parts: &[],
        responses: &[LISTED, BAD, UNAUTHORIZED],
        handler: || get(metadata::list),
    },
    Route {
        path: "/api/v2/metadata",
        method: "post",
        operation_id: "createMetadata",
        summary: "Deposits a metadata document with its record; the record links its schema (HAS_METADATA) and resources (IS_METADATA_FOR).",
        slash: true,
        params: &[],
        parts: &[
            RECORD_PART,
            Part {
                name: "document",
                required: true,
                description: "The metadata document, validated against the linked schema.",
            },
        ],
        responses: &[
            CREATED,
            BAD,
            UNAUTHORIZED,
            problem("409", "The record id is taken."),
            TOO_LARGE,
            UNSUPPORTED,
            UNPROCESSABLE,
        ],
        handler: || post(metadata::create),
    },
    Route {
        path: "/api/v2/metadata/{id}",
        method: "get",
        operation_id: "getMetadata",
        summary: "A metadata record or document, by Accept.",
        slash: false,
        params: &[path("id", "The record."), VERSION, ACCEPT],
        parts: &[],
        responses: &[
            GOT_ONE,
            BAD,
            UNAUTHORIZED,
            FORBIDDEN,
            NOT_FOUND,
            NOT_ACCEPTABLE,
        ],
        handler: || get(metadata::get_one),
    },
    Route {
        path: "/api/v2/metadata/{id}",
        method: "put",
        operation_id: "updateMetadata",
        summary: "Writes a new version from a new record and/or document.",
        slash: false,
        params: &[path("id", "The record."), IF_MATCH],
        parts: &[
            Part {
                name: "record",
                required: false,
                description: "The new record (default: the current one).",
            },
            Part {
                name: "document",
                required: false,
                description: "The new document (default: the current one).",
            },
        ],
        responses: &[
            UPDATED,
            BAD,
            UNAUTHORIZED,
            FORBIDDEN,
            NOT_FOUND,
            PRECONDITION_FAILED,
            TOO_LARGE,
            UNSUPPORTED,
            UNPROCESSABLE,
            PRECONDITION_REQUIRED,
        ],
        handler: || put(metadata::update),
    },
    Route {
        path: "/api/v2/metadata/{id}",
        method: "delete",
        operation_id: "deleteMetadata",
        summary: "Deletes a record: a tombstone version; earlier versions stay readable.",
        slash: false,
        params: &[path("id", "The record."), IF_MATCH],
        parts: &[],
        responses: &[
            Resp {
                status: "204",
                description: "Deleted.",
                content: &[],
                headers: &[],
            },
            UNAUTHORIZED,
            FORBIDDEN,
            NOT_FOUND,
            PRECONDITION_FAILED,
            PRECONDITION_REQUIRED,
        ],
        handler: || delete(metadata::delete),
    },
    Route {
        path: "/api/v2/openapi.json",
        method: "get",
        operation_id: "openapi",
        summary: "This description.",
        slash: false,
        params: &[],
        parts: &[],
        responses: &[Resp {
            status: "200",
            description: "OpenAPI 3.1.",
            content: JSON,
            headers: &[],
        }],
        handler: || get(openapi_json),
    },
];

/// The router of every route in the table, plus a problem+json 404 for
/// anything else under `/api/v2`.
pub(crate) fn build() -> Router<Shared> {
    let mut router = Router::new();
    for r in ROUTES {
        router = router.route(r.path, (r.handler)());
        if r.slash {
            router = router.route(&format!("{}/", r.path), (r.handler)());
        }
    }
    router.route("/api/v2/{*rest}", any(error::not_found))
}

async fn openapi_json(State(state): State<Shared>) -> Response {
    axum::Json(openapi(&state.context_path)).into_response()
}

fn param_json(p: &Param) -> Value {
    json!({
        "name": p.name,
        "in": match p.place { In::Path => "path", In::Query => "query", In::Header => "header" },
        "required": p.required,
        "description": p.description,
        "schema": if p.integer { json!({"type": "integer", "minimum": 0}) } else { json!({"type": "string"}) },
    })
}

fn response_json(r: &Resp) -> Value {
    let mut out = Map::new();
    out.insert("description".into(), r.description.into());
    if !r.content.is_empty() {
        let content: Map<String, Value> = r
            .content
            .iter()
            .map(|media| {
                let schema = match *media {
                    "application/problem+json" => json!({"$ref": "#/components/schemas/Problem"}),
                    "application/json" if r.headers.contains(&"Content-Range") => {
                        json!({"type": "array", "items": {"$ref": "#/components/schemas/DataCiteRecord"}})
                    }
                    "application/json" if r.status == "200" && r.headers.is_empty() => {
                        json!({"type": "object"})
                    }
                    "application/json" | DATACITE_JSON => {
                        json!({"$ref": "#/components/schemas/DataCiteRecord"})
                    }
                    _ => json!({"type": "string"}),
                };
                ((*media).to_owned(), json!({"schema": schema}))
            })
            .collect();
        out.insert("content".into(), Value::Object(content));
    }
    if !r.headers.is_empty() {
        let headers: Map<String, Value> = r
            .headers
            .iter()
            .map(|h| ((*h).to_owned(), json!({"schema": {"type": "string"}})))
            .collect();
        out.insert("headers".into(), Value::Object(headers));
    }
    Value::Object(out)
}

fn operation_json(r: &Route) -> Value {
    let mut op = Map::new();
    op.insert("operationId".into(), r.operation_id.into());
    op.insert("summary".into(), r.summary.into());
    if !r.params.is_empty() {
        op.insert(
            "parameters".into(),
            r.params.iter().map(param_json).collect(),
        );
    }
    if !r.parts.is_empty() {
        let properties: Map<String, Value> = r
            .parts
            .iter()
            .map(|p| {
                (
                    p.name.to_owned(),
                    json!({"type": "string", "format": "binary", "description": p.description}),
                )
            })
            .collect();
        let required: Vec<&str> = r
            .parts
            .iter()
            .filter(|p| p.required)
            .map(|p| p.name)
            .collect();
        op.insert(
            "requestBody".into(),
            json!({
                "required": true,
                "content": {"multipart/form-data": {"schema": {
                    "type": "object", "properties": properties, "required": required,
                }}},
            }),
        );
    }
    let responses: Map<String, Value> = r
        .responses
        .iter()
        .map(|resp| (resp.status.to_owned(), response_json(resp)))
        .collect();
    op.insert("responses".into(), Value::Object(responses));
    Value::Object(op)
}

/// The OpenAPI description, with `server` as the base path.
pub(crate) fn openapi(server: &str) -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for r in ROUTES {
        let item = paths
            .entry(r.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(item) = item {
            item.insert(r.method.to_owned(), operation_json(r));
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Sheaf REST API (MetaStore v2 compatible)",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!(
                "Schemas and metadata records. Lists are paged by page/size \
                 (default {DEFAULT_PAGE_SIZE}, at most {MAX_PAGE_SIZE}). Errors are \
                 application/problem+json. With API tokens configured, writes need \
                 'Authorization: Bearer <token>'."
            ),
        },
        "servers": [{"url": if server.is_empty() { "/" } else { server }}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Problem": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "instance": {"type": "string"},
                    },
                },
                "DataCiteRecord": {
                    "type": "object",
                    "description": "A DataCite-style record as MetaStore v2 returns it; server-assigned: identifier, publicationYear (default), CREATED date, INTERNAL alternate identifier, IS_NEW_VERSION_OF, version, lastUpdate, state.",
                    "properties": {
                        "id": {"type": "string"},
                        "identifier": {"type": "object"},
                        "creators": {"type": "array", "items": {"type": "object"}},
                        "titles": {"type": "array", "items": {"type": "object"}},
                        "publisher": {"type": "string"},
                        "publicationYear": {"type": "string"},
                        "resourceType": {"type": "object"},
                        "dates": {"type": "array", "items": {"type": "object"}},
                        "relatedIdentifiers": {"type": "array", "items": {"type": "object"}},
                        "alternateIdentifiers": {"type": "array", "items": {"type": "object"}},
                        "version": {"type": "string"},
                        "lastUpdate": {"type": "string", "format": "date-time"},
                        "state": {"type": "string", "enum": ["VOLATILE", "REVOKED"]},
                        "acls": {"type": "array", "items": {
                            "type": "object",
                            "properties": {
                                "sid": {"type": "string"},
                                "permission": {"type": "string", "enum": ["READ", "WRITE", "ADMINISTRATE"]},
                            },
                        }},
                    },
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_described_once() {
        let doc = openapi("/metastore");
        let paths = doc["paths"].as_object().expect("paths");
        let ops: usize = paths
            .values()
            .map(|p| p.as_object().map_or(0, Map::len))
            .sum();
        assert_eq!(ops, ROUTES.len());
        assert_eq!(doc["servers"][0]["url"], "/metastore");
        assert!(doc["paths"]["/api/v2/metadata/{id}"]["put"]["parameters"].is_array());
        let mut ids: Vec<&str> = ROUTES.iter().map(|r| r.operation_id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), ROUTES.len());
    }
}
