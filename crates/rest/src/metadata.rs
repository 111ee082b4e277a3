//! `/api/v2/metadata`: deposit, update and delete metadata records, read a
//! record or document by `Accept`, and list — most often by `resourceId`,
//! the hot path, which is one indexed store query plus a count.
//!
//! Harvested records are served like deposited ones; what their sparse
//! record JSON lacks is derived (see `datacite`). Depends on the registry,
//! the store trait and this crate's helpers.

use std::collections::HashMap;
use std::sync::RwLock;

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Map, Value};
use sheaf_domain::model::{Expect, Permission, RecordVersion, RecordWrite, SchemaKind};
use sheaf_domain::{RecordId, SchemaId};
use sheaf_store::{RecordFilter, StoreError};
use sheaf_validate::{RegistryError, rejection};

use crate::auth::{Caller, SELF_SID, grant_administrate, keep_administrator};
use crate::datacite::{
    RecordOut, RecordView, SchemaLink, assign_creation_fields, carry_creation_fields,
    default_resource_type, first_administrator, parse_record, strip_default_resource_type,
};
use crate::error::ApiError;
use crate::http::{
    self, DATACITE_JSON, Params, Parts, Wanted, header_value, multipart_body, negotiate, segment,
};
use crate::schemas::{check_acl_change, check_current};
use crate::{AppState, Shared};

/// The origin written on rejected deposits.
const REJECTION_ORIGIN: &str = "rest";

/// The kind of each schema version seen, so rendering a record costs no
/// schema lookup: versions are immutable, so entries never go stale.
#[derive(Default)]
pub(crate) struct KindCache {
    kinds: RwLock<HashMap<SchemaId, HashMap<i64, SchemaKind>>>,
}

impl AppState {
    async fn kind_of(&self, schema_id: &SchemaId, version: i64) -> Result<SchemaKind, ApiError> {
        if let Some(k) = self
            .kinds
            .kinds
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(schema_id)
            .and_then(|versions| versions.get(&version))
        {
            return Ok(*k);
        }
        let kind = self
            .store
            .get_schema(schema_id, Some(version))
            .await?
            .map(|s| s.kind)
            .ok_or_else(|| {
                ApiError::Internal(format!("schema {schema_id} version {version} is missing"))
            })?;
        self.kinds
            .kinds
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(schema_id.clone())
            .or_default()
            .insert(version, kind);
        Ok(kind)
    }
}

fn location(base: &str, v: &RecordVersion) -> String {
    format!(
        "{base}/metadata/{}?version={}",
        segment(v.id.as_str()),
        v.version
    )
}

/// A record version as a DataCite record.
fn render<'a>(v: &'a RecordVersion, kind: SchemaKind, base: &str) -> RecordOut<'a> {
    let fallback = v.source_id.as_ref().map_or(SELF_SID, |s| s.as_str());
    RecordView {
        id: v.id.as_str(),
        fields: &v.record,
        version: v.version,
        created_at: v.created_at,
        last_update: v.changed_at,
        deleted: v.deleted,
        default_type: default_resource_type(kind, false),
        fallback_sid: first_administrator(&v.acl, fallback),
        schema_url: Some(format!(
            "{base}/schemas/{}?version={}",
            v.schema_id, v.schema_version
        )),
        previous_url: (v.version > 1).then(|| {
            format!(
                "{base}/metadata/{}?version={}",
                segment(v.id.as_str()),
                v.version - 1
            )
        }),
        resources: &v.resources,
        acl: &v.acl,
    }
    .render()
}

/// A response carrying one record with its `Location` and `ETag`.
async fn record_response(
    status: StatusCode,
    content_type: &'static str,
    st: &AppState,
    headers: &HeaderMap,
    v: &RecordVersion,
) -> Result<Response, ApiError> {
    let base = st.api_base(headers);
    let kind = st.kind_of(&v.schema_id, v.schema_version).await?;
    let record = render(v, kind, &base);
    http::record_response(
        status,
        content_type,
        &record,
        &location(&base, v),
        &v.etag(),
    )
}

fn parse_path_id(id: &str) -> Result<RecordId, ApiError> {
    RecordId::parse(id).map_err(|_| ApiError::NotFound(format!("no record {id:?}")))
}

/// A fresh random (version 4) UUID, MetaStore's id for new records.
fn new_record_id() -> Result<RecordId, ApiError> {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{byte:02x}"));
    }
    RecordId::parse(s).map_err(|e| ApiError::Internal(e.to_string()))
}

/// The current, live version of a record (404 when absent or deleted).
async fn current_live(st: &AppState, id: &RecordId) -> Result<RecordVersion, ApiError> {
    match st.store.get_record(id, None).await? {
        Some(v) if !v.deleted => Ok(v),
        Some(_) => Err(ApiError::NotFound(format!("record {id} was deleted"))),
        None => Err(ApiError::NotFound(format!("no record {id:?}"))),
    }
}

/// Resolves a schema link and validates `document` against it: the
/// schema version to pin. A document that does not validate is kept as a
/// rejection (origin `rest`, the record id as identifier) before the 422,
/// so no deposit is lost without a trace.
async fn validate_linked(
    st: &AppState,
    id: &RecordId,
    link: SchemaLink,
    document: &[u8],
) -> Result<(SchemaId, i64, SchemaKind), ApiError> {
    let (name, version) = match link {
        SchemaLink::Internal(id) => (id, None),
        SchemaLink::Url { schema_id, version } => (schema_id, version),
    };
    let schema_id = SchemaId::parse(name.as_str())
        .map_err(|_| ApiError::Unprocessable(format!("unknown schema {name:?}")))?;
    let schema = st
        .registry
        .schema(&schema_id, version)
        .await
        .map_err(ApiError::from_registry_linked)?;
    if let Err(e) = st.registry.validate_with(&schema, document).await {
        if matches!(e, RegistryError::Invalid(_)) {
            let mut rejection = rejection(REJECTION_ORIGIN, Some(&schema), document.to_vec(), &e);
            rejection.identifier = Some(id.as_str().to_owned());
            if let Err(store) = st.store.add_rejection(rejection).await {
                tracing::error!(record = %id, error = %store, "could not keep the rejected deposit");
            }
        }
        return Err(ApiError::from_registry_linked(e));
    }
    Ok((schema.schema_id, schema.version, schema.kind))
}

/// `GET /api/v2/metadata`: filters `id`, `resourceId`, `schemaId`, `from`,
/// `until`; paged by `page`/`size`.
pub(crate) async fn list(
    State(st): State<Shared>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let caller = st.tokens.caller(&headers)?;
    let params = Params::parse(query.as_deref());
    let page = params.page()?;
    let ids = params.all(&["id"]);
    // The reference's own example spells it `resoureId`.
    let resource_ids = params.all(&["resourceId", "resoureId"]);
    let schema_names = params.all(&["schemaId"]);
    let schema_ids: Vec<SchemaId> = schema_names
        .iter()
        .filter_map(|s| SchemaId::parse(s.as_str()).ok())
        .collect();
    let from = params.instant("from", false)?;
    let until = params.instant("until", true)?;
    let record_ids: Vec<RecordId> = ids
        .iter()
        .filter_map(|s| RecordId::parse(s.as_str()).ok())
        .collect();
    // Ids or schema ids that cannot exist match nothing.
    let impossible = (!ids.is_empty() && record_ids.is_empty())
        || (!schema_names.is_empty() && schema_ids.is_empty());

    let (items, total) = if impossible {
        (Vec::new(), 0)
    } else if ids.len() == 1 {
        // One id: every version of it, current first, as the reference.
        let versions = st.store.record_versions(&record_ids[0]).await?;
        let visible = versions
            .first()
            .is_some_and(|c| !c.deleted && caller.may(&c.acl, Permission::Read));
        let matching: Vec<RecordVersion> = versions
            .into_iter()
            .filter(|v| {
                visible
                    && !v.deleted
                    && (resource_ids.is_empty()
                        || v.resources.iter().any(|r| resource_ids.contains(r)))
                    && (schema_ids.is_empty() || schema_ids.contains(&v.schema_id))
                    && from.is_none_or(|f| v.changed_at >= f)
                    && until.is_none_or(|u| v.changed_at <= u)
            })
            .collect();
        let total = matching.len() as i64;
        (page.slice(matching), total)
    } else {
        let filter = RecordFilter {
            ids: record_ids,
            resource_ids,
            schema_ids,
            from,
            until,
            readable_by: caller.readable_by(),
            ..RecordFilter::default()
        };
        st.store
            .list_records(&filter, page.offset, page.size)
            .await?
    };

    let base = st.api_base(&headers);
    let mut kinds = Vec::with_capacity(items.len());
    for v in &items {
        kinds.push(st.kind_of(&v.schema_id, v.schema_version).await?);
    }
    let out: Vec<RecordOut<'_>> = items
        .iter()
        .zip(kinds)
        .map(|(v, kind)| render(v, kind, &base))
        .collect();
    page.respond(&out, total)
}

/// `POST /api/v2/metadata`: `record` + `document` parts.
#[tracing::instrument(name = "rest_create_metadata", skip_all)]
pub(crate) async fn create(
    State(st): State<Shared>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let caller = st.tokens.caller(&headers)?;
    let sid = caller.writer()?.to_owned();
    let multipart = multipart_body(&headers, st.max_body_bytes, multipart)?;
    let parts = Parts::read(multipart, &["record", "document"], st.max_body_bytes).await?;
    let record = parse_record(parts.require("record")?)?;
    let document = parts.require("document")?.to_vec();
    let id = match record.id.as_deref() {
        Some(id) => RecordId::parse(id)
            .map_err(|e| ApiError::BadRequest(format!("record: id {id:?}: {e}")))?,
        None => new_record_id()?,
    };
    let link = record.schema_link.ok_or_else(|| {
        ApiError::Unprocessable(
            "record names no schema: add a relatedIdentifier with relationType HAS_METADATA".into(),
        )
    })?;
    let (schema_id, schema_version, kind) = validate_linked(&st, &id, link, &document).await?;
    let mut fields = record.fields;
    strip_default_resource_type(&mut fields, default_resource_type(kind, false));
    assign_creation_fields(&mut fields, &sid, Utc::now());
    let mut acl = record.acl.unwrap_or_default();
    grant_administrate(&mut acl, &sid);
    let write = RecordWrite {
        id,
        schema_id,
        schema_version,
        document,
        record: Value::Object(fields),
        resources: record.resources,
        acl,
        source_id: None,
        provenance: None,
    };
    let id = write.id.clone();
    let outcome = st
        .store
        .put_record(write, Expect::Absent)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => ApiError::Conflict(format!("record {id} already exists")),
            e => e.into(),
        })?;
    record_response(
        StatusCode::CREATED,
        "application/json",
        &st,
        &headers,
        outcome.version(),
    )
    .await
}

/// `GET /api/v2/metadata/{id}[?version=N]`.
pub(crate) async fn get_one(
    State(st): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let caller = st.tokens.caller(&headers)?;
    let wanted = negotiate(&headers)?;
    let version = Params::parse(query.as_deref()).version()?;
    let id = parse_path_id(&id)?;
    let v = match st.store.get_record(&id, version).await? {
        Some(v) => v,
        None => {
            return Err(match version {
                Some(n) if st.store.get_record(&id, None).await?.is_some() => {
                    ApiError::NotFound(format!("record {id} has no version {n}"))
                }
                _ => ApiError::NotFound(format!("no record {id:?}")),
            });
        }
    };
    // The current ACL decides, also for old versions.
    let acl = match version {
        None => v.acl.clone(),
        Some(_) => st.store.record_acl(&id).await?,
    };
    caller.require(&acl, Permission::Read, "reading this record")?;
    if v.deleted {
        return Err(ApiError::NotFound(format!(
            "record {id} was deleted in version {}",
            v.version
        )));
    }
    match wanted {
        Wanted::Record => record_response(StatusCode::OK, DATACITE_JSON, &st, &headers, &v).await,
        Wanted::Document => {
            let content_type = match st.kind_of(&v.schema_id, v.schema_version).await? {
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

/// `PUT /api/v2/metadata/{id}`: a new `record` and/or `document`.
#[tracing::instrument(name = "rest_update_metadata", skip_all, fields(record = %id))]
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
    let path_id = id;
    let id = parse_path_id(&path_id)?;
    let current = current_live(&st, &id).await?;
    check_current(&headers, &query, current.version, &current.etag())?;
    caller.require(&current.acl, Permission::Write, "updating this record")?;
    let parts = Parts::read(multipart, &["record", "document"], st.max_body_bytes).await?;
    if parts.is_empty() {
        return Err(ApiError::BadRequest(
            "send a record part, a document part or both".into(),
        ));
    }
    let (mut fields, resources, acl, link) = match parts.get("record") {
        None => (
            current.record.as_object().cloned().unwrap_or_default(),
            current.resources.clone(),
            current.acl.clone(),
            None,
        ),
        Some(bytes) => {
            let r = parse_record(bytes)?;
            if let Some(rid) = r.id.as_deref().filter(|r| *r != path_id) {
                return Err(ApiError::BadRequest(format!(
                    "record: id {rid:?} is not this record's id {path_id:?}"
                )));
            }
            let mut fields: Map<String, Value> = r.fields;
            carry_creation_fields(&mut fields, &current.record);
            let acl = match r.acl {
                Some(mut acl) => {
                    keep_administrator(&mut acl, &sid);
                    acl
                }
                None => current.acl.clone(),
            };
            (fields, r.resources, acl, r.schema_link)
        }
    };
    check_acl_change(&caller, &current.acl, &acl)?;
    let document = match parts.get("document") {
        Some(d) => d.to_vec(),
        None => current.document.clone(),
    };
    let link = link.unwrap_or(SchemaLink::Url {
        schema_id: current.schema_id.as_str().to_owned(),
        version: Some(current.schema_version),
    });
    let (schema_id, schema_version, kind) = validate_linked(&st, &id, link, &document).await?;
    strip_default_resource_type(&mut fields, default_resource_type(kind, false));
    let write = RecordWrite {
        id,
        schema_id,
        schema_version,
        document,
        record: Value::Object(fields),
        resources,
        acl,
        source_id: current.source_id.clone(),
        provenance: None,
    };
    let outcome = st
        .store
        .put_record(write, Expect::Version(current.version))
        .await?;
    record_response(
        StatusCode::OK,
        "application/json",
        &st,
        &headers,
        outcome.version(),
    )
    .await
}

/// `DELETE /api/v2/metadata/{id}`: a tombstone version (needs `If-Match`
/// and ADMINISTRATE).
#[tracing::instrument(name = "rest_delete_metadata", skip_all, fields(record = %id))]
pub(crate) async fn delete(
    State(st): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let caller: Caller = st.tokens.caller(&headers)?;
    caller.writer()?;
    let id = parse_path_id(&id)?;
    let current = current_live(&st, &id).await?;
    check_current(&headers, &query, current.version, &current.etag())?;
    caller.require(
        &current.acl,
        Permission::Administrate,
        "deleting this record",
    )?;
    st.store
        .delete_record(&id, Expect::Version(current.version), None)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_v4_uuids() {
        let id = new_record_id().expect("id");
        let s = id.as_str();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(new_record_id().expect("id"), id);
    }
}
