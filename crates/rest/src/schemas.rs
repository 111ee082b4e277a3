//! `/api/v2/schemas`: register schemas, add versions, read a record or
//! document by `Accept`, list, and validate documents.
//!
//! A schema's ACL lives in its stored record (`acls`), since the schema
//! model has no ACL of its own. Schemas are readable by everyone — every
//! deposit and harvest needs them, and `/oai` lists them anyway; writes
//! follow the ACL. Depends on the registry, the store trait and this
//! crate's helpers.

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::Value;
use sheaf_domain::SchemaId;
use sheaf_domain::model::{AclEntry, Expect, Permission, SchemaKind, SchemaVersion};
use sheaf_store::StoreError;
use sheaf_validate::{RegistryError, SchemaRequest};

use crate::auth::{Caller, SELF_SID, grant_administrate, keep_administrator};
use crate::datacite::{
    RecordOut, RecordView, assign_creation_fields, carry_creation_fields, default_resource_type,
    first_administrator, parse_record, strip_default_resource_type,
};
use crate::error::ApiError;
use crate::http::{
    self, DATACITE_JSON, Params, Parts, Wanted, header_value, if_match, multipart_body, negotiate,
};
use crate::{AppState, Shared};

/// The ACL stored in a schema's record.
fn schema_acl(v: &SchemaVersion) -> Vec<AclEntry> {
    v.record
        .get("acls")
        .and_then(|a| serde_json::from_value(a.clone()).ok())
        .unwrap_or_default()
}

/// A schema version as a DataCite record.
fn render<'a>(v: &'a SchemaVersion, acl: &'a [AclEntry], base: &str) -> RecordOut<'a> {
    RecordView {
        id: v.schema_id.as_str(),
        fields: &v.record,
        version: v.version,
        created_at: v.created_at,
        last_update: v.updated_at,
        deleted: false,
        default_type: default_resource_type(v.kind, true),
        fallback_sid: first_administrator(acl, SELF_SID),
        schema_url: None,
        previous_url: (v.version > 1)
            .then(|| format!("{base}/schemas/{}?version={}", v.schema_id, v.version - 1)),
        resources: &[],
        acl,
    }
    .render()
}

fn location(base: &str, v: &SchemaVersion) -> String {
    format!("{base}/schemas/{}?version={}", v.schema_id, v.version)
}

/// A response carrying one schema's record with its `Location` and `ETag`.
fn record_response(
    status: StatusCode,
    content_type: &'static str,
    st: &AppState,
    headers: &HeaderMap,
    v: &SchemaVersion,
) -> Result<Response, ApiError> {
    let base = st.api_base(headers);
    let acl = schema_acl(v);
    let record = render(v, &acl, &base);
    http::record_response(
        status,
        content_type,
        &record,
        &location(&base, v),
        &v.etag(),
    )
}

/// Tells XSD from JSON Schema by the first significant byte: clients label
/// parts loosely (the reference uploads a JSON schema as application/xml).
fn sniff_kind(document: &[u8]) -> Result<SchemaKind, ApiError> {
    let body = document.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(document);
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'<') => Ok(SchemaKind::Xsd),
        Some(b'{' | b't' | b'f') => Ok(SchemaKind::Json),
        _ => Err(ApiError::Unprocessable(
            "the schema is neither an XML Schema nor a JSON Schema document".into(),
        )),
    }
}

fn parse_path_id(id: &str) -> Result<SchemaId, ApiError> {
    SchemaId::parse(id).map_err(|_| ApiError::NotFound(format!("unknown schema {id:?}")))
}

/// `GET /api/v2/schemas`.
pub(crate) async fn list(
    State(st): State<Shared>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    st.tokens.caller(&headers)?;
    let params = Params::parse(query.as_deref());
    let page = params.page()?;
    let from = params.instant("from", false)?;
    let until = params.instant("until", true)?;
    let versions = match params.one("schemaId")? {
        // An id that cannot exist matches nothing.
        Some(id) => match SchemaId::parse(id) {
            Ok(id) => st.store.schema_versions(&id).await?,
            Err(_) => Vec::new(),
        },
        None => st.store.list_schemas().await?,
    };
    let versions: Vec<SchemaVersion> = versions
        .into_iter()
        .filter(|v| {
            from.is_none_or(|f| v.updated_at >= f) && until.is_none_or(|u| v.updated_at <= u)
        })
        .collect();
    let total = versions.len() as i64;
    let items = page.slice(versions);
    let base = st.api_base(&headers);
    let acls: Vec<Vec<AclEntry>> = items.iter().map(schema_acl).collect();
    let out: Vec<RecordOut<'_>> = items
        .iter()
        .zip(&acls)
        .map(|(v, acl)| render(v, acl, &base))
        .collect();
    page.respond(&out, total)
}

/// `POST /api/v2/schemas`: `schema` + `record` parts.
#[tracing::instrument(name = "rest_create_schema", skip_all)]
pub(crate) async fn create(
    State(st): State<Shared>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let caller = st.tokens.caller(&headers)?;
    let sid = caller.writer()?.to_owned();
    let multipart = multipart_body(&headers, st.max_body_bytes, multipart)?;
    let parts = Parts::read(multipart, &["schema", "record"], st.max_body_bytes).await?;
    let document = parts.require("schema")?.to_vec();
    let record = parse_record(parts.require("record")?)?;
    let id = record
        .id
        .ok_or_else(|| ApiError::BadRequest("record: id (the schemaId) is missing".into()))?;
    let schema_id = SchemaId::parse(id.as_str())
        .map_err(|e| ApiError::BadRequest(format!("record: id {id:?} is not a schemaId: {e}")))?;
    let kind = sniff_kind(&document)?;
    let mut fields = record.fields;
    strip_default_resource_type(&mut fields, default_resource_type(kind, true));
    assign_creation_fields(&mut fields, &sid, Utc::now());
    let mut acl = record.acl.unwrap_or_default();
    grant_administrate(&mut acl, &sid);
    fields.insert(
        "acls".into(),
        serde_json::to_value(&acl).unwrap_or_default(),
    );
    let request = SchemaRequest {
        schema_id,
        kind,
        document,
        metadata_prefix: None,
        record: Value::Object(fields),
    };
    let outcome = st
        .registry
        .register(request, Expect::Absent)
        .await
        .map_err(|e| match e {
            RegistryError::Store(StoreError::Conflict(_)) => {
                ApiError::Conflict(format!("schema {id} already exists"))
            }
            e => ApiError::from_registry(e),
        })?;
    record_response(
        StatusCode::CREATED,
        "application/json",
        &st,
        &headers,
        &outcome.into_version(),
    )
}

/// `GET /api/v2/schemas/{schemaId}[?version=N]`.
pub(crate) async fn get_one(
    State(st): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    st.tokens.caller(&headers)?;
    let wanted = negotiate(&headers)?;
    let version = Params::parse(query.as_deref()).version()?;
    let schema_id = parse_path_id(&id)?;
    let v = st
        .registry
        .schema(&schema_id, version)
        .await
        .map_err(ApiError::from_registry)?;
    match wanted {
        Wanted::Record => record_response(StatusCode::OK, DATACITE_JSON, &st, &headers, &v),
        Wanted::Document => {
            let content_type = match v.kind {
                SchemaKind::Xsd => "application/xml",
                SchemaKind::Json => "application/json",
            };
            Ok((
                [
                    (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                    (header::ETAG, header_value(&v.etag())?),
                ],
                v.document,
            )
                .into_response())
        }
    }
}

/// `PUT /api/v2/schemas/{schemaId}`: a new `schema` and/or `record`.
#[tracing::instrument(name = "rest_update_schema", skip_all, fields(schema = %id))]
pub(crate) async fn update(
    State(st): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let caller = st.tokens.caller(&headers)?;
    let sid = caller.writer()?.to_owned();
    let multipart = multipart_body(&headers, st.max_body_bytes, multipart)?;
    let schema_id = parse_path_id(&id)?;
    let current = st
        .store
        .get_schema(&schema_id, None)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("unknown schema {id:?}")))?;
    check_current(&headers, &query, current.version, &current.etag())?;
    let current_acl = schema_acl(&current);
    caller.require(&current_acl, Permission::Write, "updating this schema")?;
    let parts = Parts::read(multipart, &["schema", "record"], st.max_body_bytes).await?;
    if parts.is_empty() {
        return Err(ApiError::BadRequest(
            "send a schema part, a record part or both".into(),
        ));
    }
    let (document, kind) = match parts.get("schema") {
        Some(d) => (d.to_vec(), sniff_kind(d)?),
        None => (current.document.clone(), current.kind),
    };
    let record = match parts.get("record") {
        None => current.record.clone(),
        Some(bytes) => {
            let r = parse_record(bytes)?;
            if let Some(rid) = r.id.as_deref().filter(|r| *r != id) {
                return Err(ApiError::BadRequest(format!(
                    "record: id {rid:?} is not this schema's id {id:?}"
                )));
            }
            let mut fields = r.fields;
            strip_default_resource_type(&mut fields, default_resource_type(kind, true));
            carry_creation_fields(&mut fields, &current.record);
            let acl = match r.acl {
                Some(mut acl) => {
                    keep_administrator(&mut acl, &sid);
                    acl
                }
                None => current_acl.clone(),
            };
            check_acl_change(&caller, &current_acl, &acl)?;
            fields.insert(
                "acls".into(),
                serde_json::to_value(&acl).unwrap_or_default(),
            );
            Value::Object(fields)
        }
    };
    let request = SchemaRequest {
        schema_id,
        kind,
        document,
        metadata_prefix: Some(current.metadata_prefix.clone()),
        record,
    };
    let outcome = st
        .registry
        .register(request, Expect::Version(current.version))
        .await
        .map_err(ApiError::from_registry)?;
    record_response(
        StatusCode::OK,
        "application/json",
        &st,
        &headers,
        &outcome.into_version(),
    )
}

/// `POST /api/v2/schemas/{schemaId}/validate[?version=N]`: 204 or 422.
#[tracing::instrument(name = "rest_validate", skip_all, fields(schema = %id))]
pub(crate) async fn validate(
    State(st): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    st.tokens.caller(&headers)?;
    let multipart = multipart_body(&headers, st.max_body_bytes, multipart)?;
    let version = Params::parse(query.as_deref()).version()?;
    let schema_id = parse_path_id(&id)?;
    let parts = Parts::read(multipart, &["document"], st.max_body_bytes).await?;
    let document = parts.require("document")?;
    st.registry
        .validate(&schema_id, version, document)
        .await
        .map_err(ApiError::from_registry)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The checks every write makes on the version it replaces: `If-Match`
/// names it (428 without, 412 otherwise), and a `?version=` names it too
/// (old versions are immutable).
pub(crate) fn check_current(
    headers: &HeaderMap,
    query: &Option<String>,
    current_version: i64,
    current_etag: &str,
) -> Result<(), ApiError> {
    if !if_match(headers, current_etag)? {
        return Err(ApiError::PreconditionFailed(
            "If-Match is not the ETag of the current version; fetch it again".into(),
        ));
    }
    match Params::parse(query.as_deref()).version()? {
        Some(v) if v != current_version => Err(ApiError::PreconditionFailed(format!(
            "version {v} is not the current version ({current_version}); old versions cannot change"
        ))),
        _ => Ok(()),
    }
}

/// Changing an ACL needs ADMINISTRATE.
pub(crate) fn check_acl_change(
    caller: &Caller,
    current: &[AclEntry],
    new: &[AclEntry],
) -> Result<(), ApiError> {
    let mut a = current.to_vec();
    let mut b = new.to_vec();
    a.sort();
    b.sort();
    if a != b {
        caller.require(current, Permission::Administrate, "changing the ACL")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_sniffed() {
        assert_eq!(sniff_kind(b"  <xs:schema/>").ok(), Some(SchemaKind::Xsd));
        assert_eq!(sniff_kind(b"\xEF\xBB\xBF{}").ok(), Some(SchemaKind::Json));
        assert!(sniff_kind(b"hello").is_err());
        assert!(sniff_kind(b"").is_err());
    }
}
