//! Answers each verb from the store and renders the response.
//!
//! Lists (ListRecords, ListIdentifiers) are snapshots: the first page takes
//! the store's horizon, counts the list once, and every later page reads
//! the same snapshot after the last change sequence served — a keyset, so
//! page 2 000 costs what page 1 costs. The `responseDate` of every page is
//! the snapshot time, so a harvester that uses it as its next `from` sees
//! every change committed after the snapshot, however late it committed.
//! Rows are streamed from the store into the response body chunk by chunk.
//! Depends on the store trait and `sheaf-domain`.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::header::{CONTENT_TYPE, HOST, RETRY_AFTER};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use sheaf_domain::model::{RecordVersion, SchemaKind, SchemaVersion};
use sheaf_domain::{Datestamp, RecordId, SchemaId, SourceId};
use sheaf_store::{ChangeQuery, DynStore, StoreError};
use tokio::sync::OnceCell;

use crate::config::{MAX_PAGE_SIZE, OaiConfig};
use crate::dc;
use crate::error::{Code, Failure, OaiError, err};
use crate::request::{self, ListArgs, OaiRequest, is_prefix, is_set_spec};
use crate::token::{ListKind, TokenKey, TokenState};
use crate::xml::{
    self, OAI_DC_NS, OAI_DC_SCHEMA, Xml, element, end, envelope_end, envelope_start, start,
};
use crate::xslt::{Crosswalks, DcField};

/// The name the token key is stored under in the database.
const TOKEN_KEY_NAME: &str = "oai.resumption-token-key";
/// Bytes rendered before a chunk is handed to the response body.
const CHUNK: usize = 32 * 1024;
/// Schema versions remembered (they are immutable, so never stale).
const SCHEMA_CACHE: usize = 4096;

/// What a record's schema version says about how to disseminate it.
#[derive(Debug)]
pub(crate) struct SchemaInfo {
    kind: SchemaKind,
    namespace: Option<String>,
    prefix: String,
}

impl SchemaInfo {
    fn of(s: &SchemaVersion) -> Self {
        Self {
            kind: s.kind,
            namespace: s.namespace.clone(),
            prefix: s.metadata_prefix.clone(),
        }
    }

    /// Whether the schema is an OAI metadata format of its own: XML with a
    /// namespace and a prefix (JSON documents cannot be OAI metadata; their
    /// records are disseminated as `oai_dc` only).
    fn publishable(&self) -> bool {
        self.kind == SchemaKind::Xsd
            && self.namespace.as_deref().is_some_and(|n| !n.is_empty())
            && is_prefix(&self.prefix)
            && self.prefix != "oai_dc"
    }

    /// Whether stored documents already are `oai_dc`.
    fn is_oai_dc(&self) -> bool {
        self.kind == SchemaKind::Xsd && self.namespace.as_deref() == Some(OAI_DC_NS)
    }
}

/// Where this request reached us.
pub(crate) struct Ctx {
    /// The public site root, e.g. `https://meta.example.org`.
    site: String,
    /// The site root plus the requested path: Identify's `baseURL`.
    base_url: String,
}

/// The endpoint's shared state.
pub(crate) struct Oai {
    store: DynStore,
    config: OaiConfig,
    page_size: usize,
    key: OnceCell<TokenKey>,
    schemas: Mutex<HashMap<(SchemaId, i64), Arc<SchemaInfo>>>,
    crosswalks: Crosswalks,
}

impl Oai {
    pub(crate) fn new(store: DynStore, config: OaiConfig, crosswalks: Crosswalks) -> Self {
        Self {
            crosswalks,
            store,
            page_size: config.page_size.clamp(1, MAX_PAGE_SIZE),
            config,
            key: OnceCell::new(),
            schemas: Mutex::new(HashMap::new()),
        }
    }

    /// Answers one request.
    pub(crate) async fn respond(
        self: &Arc<Self>,
        args: Vec<(String, String)>,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Response {
        let ctx = self.context(uri, headers);
        let req = match request::parse(args) {
            Ok(r) => r,
            Err(e) => return error_response(&ctx, None, &e),
        };
        let result = match &req {
            OaiRequest::Identify => self.identify(&ctx, &req).await,
            OaiRequest::ListMetadataFormats { identifier } => {
                self.list_metadata_formats(&ctx, &req, identifier.as_deref())
                    .await
            }
            OaiRequest::ListSets { resumption_token } => {
                self.list_sets(&ctx, &req, resumption_token.as_deref())
                    .await
            }
            OaiRequest::GetRecord { identifier, prefix } => {
                self.get_record(&ctx, &req, identifier, prefix).await
            }
            OaiRequest::ListIdentifiers(a) => self.list(&ctx, &req, ListKind::Identifiers, a).await,
            OaiRequest::ListRecords(a) => self.list(&ctx, &req, ListKind::Records, a).await,
        };
        match result {
            Ok(r) => r,
            Err(Failure::Protocol(e)) => error_response(&ctx, Some(&req), &e),
            Err(Failure::Store(e)) => {
                tracing::error!(verb = req.verb(), "OAI-PMH request failed: {e}");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(RETRY_AFTER, "30")],
                    "the repository is temporarily unavailable; retry later\n",
                )
                    .into_response()
            }
            Err(Failure::Render(e)) => {
                tracing::error!(verb = req.verb(), "OAI-PMH response failed: {e}");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }

    fn context(&self, uri: &Uri, headers: &HeaderMap) -> Ctx {
        let site = match &self.config.public_base_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => {
                let host = headers
                    .get(HOST)
                    .and_then(|h| h.to_str().ok())
                    .or(uri.authority().map(|a| a.as_str()))
                    .filter(|h| is_host(h))
                    .unwrap_or("localhost");
                let scheme = headers
                    .get("x-forwarded-proto")
                    .and_then(|h| h.to_str().ok())
                    .filter(|s| *s == "https")
                    .unwrap_or("http");
                format!("{scheme}://{host}")
            }
        };
        Ctx {
            base_url: format!("{site}{}", uri.path()),
            site,
        }
    }

    async fn key(&self) -> Result<&TokenKey, StoreError> {
        self.key
            .get_or_try_init(|| async {
                match &self.config.token_secret {
                    Some(s) => Ok(TokenKey::from_secret(s)),
                    None => {
                        let candidate: [u8; 32] = rand::random();
                        let stored = self
                            .store
                            .shared_secret(TOKEN_KEY_NAME, candidate.to_vec())
                            .await?;
                        Ok(TokenKey::from_bytes(&stored))
                    }
                }
            })
            .await
    }

    async fn schema_info(
        &self,
        id: &SchemaId,
        version: i64,
    ) -> Result<Arc<SchemaInfo>, StoreError> {
        let key = (id.clone(), version);
        if let Some(i) = self.cache().get(&key) {
            return Ok(i.clone());
        }
        let info = Arc::new(match self.store.get_schema(id, Some(version)).await? {
            Some(v) => SchemaInfo::of(&v),
            // A record always names an existing schema version (foreign
            // key); should one be missing, offer the record as oai_dc only.
            None => SchemaInfo {
                kind: SchemaKind::Json,
                namespace: None,
                prefix: String::new(),
            },
        });
        let mut cache = self.cache();
        if cache.len() >= SCHEMA_CACHE {
            cache.clear();
        }
        cache.insert(key, info.clone());
        Ok(info)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<(SchemaId, i64), Arc<SchemaInfo>>> {
        // The map holds immutable facts; a panic elsewhere cannot leave it
        // inconsistent, so a poisoned lock is still usable.
        self.schemas.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The `oai_dc` fields an XSLT crosswalk makes of a live record whose
    /// document is not Dublin Core, disseminated as `prefix`; `None` for
    /// another prefix, when no stylesheet applies or when the transform
    /// failed (then the DataCite crosswalk is used).
    async fn xslt_dc(
        &self,
        rec: &RecordVersion,
        info: &SchemaInfo,
        prefix: &str,
    ) -> Option<Vec<DcField>> {
        if prefix != "oai_dc" || rec.deleted || info.is_oai_dc() {
            return None;
        }
        let index = self
            .crosswalks
            .find(&rec.schema_id, info.namespace.as_deref())?;
        match self.crosswalks.apply(index, rec.document.clone()).await {
            Ok(fields) => Some(fields),
            Err(e) => {
                tracing::warn!(
                    record = %rec.id,
                    stylesheet = %self.crosswalks.file(index),
                    "XSLT crosswalk failed, using the DataCite crosswalk: {e}"
                );
                None
            }
        }
    }

    fn oai_id(&self, id: &RecordId) -> String {
        format!("oai:{}:{id}", self.config.repository_identifier)
    }

    async fn record_for(&self, identifier: &str) -> Result<RecordVersion, Failure> {
        let missing = || {
            Failure::Protocol(OaiError::new(
                Code::IdDoesNotExist,
                "no item has this identifier in this repository",
            ))
        };
        let prefix = format!("oai:{}:", self.config.repository_identifier);
        let id = identifier
            .strip_prefix(&prefix)
            .and_then(|local| RecordId::parse(local).ok())
            .ok_or_else(missing)?;
        self.store.get_record(&id, None).await?.ok_or_else(missing)
    }

    async fn identify(&self, ctx: &Ctx, req: &OaiRequest) -> Result<Response, Failure> {
        let now = Utc::now();
        // An empty repository's future records all change after now.
        let earliest = self.store.earliest_change().await?.unwrap_or(now);
        let c = &self.config;
        let mut x = xml::writer();
        envelope_start(&mut x, now, &ctx.base_url, &req.echo())?;
        start(&mut x, "Identify", &[])?;
        element(&mut x, "repositoryName", &[], &c.repository_name)?;
        element(&mut x, "baseURL", &[], &ctx.base_url)?;
        element(&mut x, "protocolVersion", &[], "2.0")?;
        element(&mut x, "adminEmail", &[], &c.admin_email)?;
        element(&mut x, "earliestDatestamp", &[], &xml::seconds(earliest))?;
        element(&mut x, "deletedRecord", &[], "persistent")?;
        element(&mut x, "granularity", &[], "YYYY-MM-DDThh:mm:ssZ")?;
        element(&mut x, "compression", &[], "gzip")?;
        element(&mut x, "compression", &[], "deflate")?;
        xml::oai_identifier(&mut x, &c.repository_identifier)?;
        end(&mut x, "Identify")?;
        envelope_end(&mut x)?;
        Ok(xml_response(Body::from(x.into_inner())))
    }

    async fn list_metadata_formats(
        &self,
        ctx: &Ctx,
        req: &OaiRequest,
        identifier: Option<&str>,
    ) -> Result<Response, Failure> {
        let now = Utc::now();
        let mut formats: Vec<(String, String, String)> = vec![(
            "oai_dc".to_owned(),
            OAI_DC_SCHEMA.to_owned(),
            OAI_DC_NS.to_owned(),
        )];
        let mut add = |prefix: &str, id: &SchemaId, version: i64, info: &SchemaInfo| {
            if info.publishable() && !formats.iter().any(|(p, _, _)| p == prefix) {
                formats.push((
                    prefix.to_owned(),
                    format!("{}/api/v2/schemas/{id}?version={version}", ctx.site),
                    info.namespace.clone().unwrap_or_default(),
                ));
            }
        };
        if let Some(identifier) = identifier {
            let rec = self.record_for(identifier).await?;
            let info = self.schema_info(&rec.schema_id, rec.schema_version).await?;
            add(&info.prefix, &rec.schema_id, rec.schema_version, &info);
        } else {
            for s in self.store.list_schemas().await? {
                add(
                    &s.metadata_prefix,
                    &s.schema_id,
                    s.version,
                    &SchemaInfo::of(&s),
                );
            }
        }
        // oai_dc is offered for every item, so an item never lacks a format.
        if formats.is_empty() {
            return err(Code::NoMetadataFormats, "no metadata format for this item");
        }
        let mut x = xml::writer();
        envelope_start(&mut x, now, &ctx.base_url, &req.echo())?;
        start(&mut x, "ListMetadataFormats", &[])?;
        for (prefix, schema, ns) in &formats {
            start(&mut x, "metadataFormat", &[])?;
            element(&mut x, "metadataPrefix", &[], prefix)?;
            element(&mut x, "schema", &[], schema)?;
            element(&mut x, "metadataNamespace", &[], ns)?;
            end(&mut x, "metadataFormat")?;
        }
        end(&mut x, "ListMetadataFormats")?;
        envelope_end(&mut x)?;
        Ok(xml_response(Body::from(x.into_inner())))
    }

    async fn get_record(
        &self,
        ctx: &Ctx,
        req: &OaiRequest,
        identifier: &str,
        prefix: &str,
    ) -> Result<Response, Failure> {
        let now = Utc::now();
        let rec = self.record_for(identifier).await?;
        let info = self.schema_info(&rec.schema_id, rec.schema_version).await?;
        if prefix != "oai_dc" && !(info.publishable() && info.prefix == prefix) {
            return err(
                Code::CannotDisseminateFormat,
                format!("the item is not available as {prefix}"),
            );
        }
        let crossed = self.xslt_dc(&rec, &info, prefix).await;
        let mut x = xml::writer();
        envelope_start(&mut x, now, &ctx.base_url, &req.echo())?;
        start(&mut x, "GetRecord", &[])?;
        write_record(
            &mut x,
            &self.oai_id(&rec.id),
            &rec,
            prefix,
            &info,
            crossed.as_deref(),
        )?;
        end(&mut x, "GetRecord")?;
        envelope_end(&mut x)?;
        Ok(xml_response(Body::from(x.into_inner())))
    }

    /// Every set, by setSpec: one per schema, one per source, and the
    /// upstream sets beneath their source.
    async fn all_sets(&self) -> Result<BTreeMap<String, String>, StoreError> {
        let mut sets = BTreeMap::new();
        for s in self.store.list_schemas().await? {
            let name = match first_title(&s.record) {
                Some(t) => format!("Records in schema {} ({t})", s.schema_id),
                None => format!("Records in schema {}", s.schema_id),
            };
            sets.insert(format!("schema:{}", s.schema_id), name);
        }
        for src in self.store.list_sources().await? {
            let label = ["name", "title"]
                .iter()
                .find_map(|k| src.config[*k].as_str())
                .unwrap_or(&src.base_url);
            sets.insert(
                format!("source:{}", src.id),
                format!("Records harvested from {} ({label})", src.id),
            );
            for up in self.store.upstream_sets(&src.id).await? {
                let spec = format!("source:{}:{up}", src.id);
                if is_set_spec(&spec) {
                    sets.insert(spec, format!("Upstream set {up} of {}", src.id));
                }
            }
        }
        Ok(sets)
    }

    async fn list_sets(
        &self,
        ctx: &Ctx,
        req: &OaiRequest,
        token: Option<&str>,
    ) -> Result<Response, Failure> {
        let now = Utc::now();
        let key = self.key().await?;
        let resumed = match token {
            Some(t) => {
                let st = key.open(t, now.timestamp())?;
                if st.kind != ListKind::Sets {
                    return err(Code::BadResumptionToken, "the token continues another list");
                }
                Some(st)
            }
            None => None,
        };
        let sets = self.all_sets().await?;
        if sets.is_empty() {
            return err(Code::NoSetHierarchy, "this repository has no sets yet");
        }
        let after = resumed.as_ref().and_then(|s| s.after_set.clone());
        let page: Vec<(&String, &String)> = sets
            .iter()
            .filter(|(spec, _)| after.as_ref().is_none_or(|a| *spec > a))
            .take(self.page_size + 1)
            .collect();
        if page.is_empty() {
            return err(
                Code::BadResumptionToken,
                "the set list has changed; start again",
            );
        }
        let has_more = page.len() > self.page_size;
        let page = &page[..page.len().min(self.page_size)];
        let mut state = resumed.unwrap_or(TokenState {
            kind: ListKind::Sets,
            prefix: None,
            set: None,
            from: None,
            until: None,
            horizon_seq: 0,
            horizon_at: now.timestamp_micros(),
            after_seq: 0,
            after_set: None,
            cursor: 0,
            size: sets.len() as u64,
            expires: 0,
        });
        let mut x = xml::writer();
        envelope_start(&mut x, now, &ctx.base_url, &req.echo())?;
        start(&mut x, "ListSets", &[])?;
        for (spec, name) in page {
            start(&mut x, "set", &[])?;
            element(&mut x, "setSpec", &[], spec)?;
            element(&mut x, "setName", &[], name)?;
            end(&mut x, "set")?;
        }
        let cursor = state.cursor;
        let next = has_more.then(|| {
            state.after_set = page.last().map(|(s, _)| (*s).clone());
            state.cursor += page.len() as u64;
            state.size = state.size.max(state.cursor + 1);
            self.seal(key, &mut state, now)
        });
        resumption(&mut x, next, cursor, state.size)?;
        end(&mut x, "ListSets")?;
        envelope_end(&mut x)?;
        Ok(xml_response(Body::from(x.into_inner())))
    }

    /// Signs `state` with a fresh expiry; returns the token and its expiry.
    fn seal(
        &self,
        key: &TokenKey,
        state: &mut TokenState,
        now: DateTime<Utc>,
    ) -> (String, DateTime<Utc>) {
        let ttl = i64::from(self.config.token_ttl_hours) * 3600;
        state.expires = now.timestamp().saturating_add(ttl);
        let at = DateTime::from_timestamp(state.expires, 0).unwrap_or(now);
        (key.seal(state), at)
    }

    async fn list(
        self: &Arc<Self>,
        ctx: &Ctx,
        req: &OaiRequest,
        kind: ListKind,
        args: &ListArgs,
    ) -> Result<Response, Failure> {
        let now = Utc::now();
        let key = self.key().await?.clone();
        let state = match args {
            ListArgs::Start(sel) => {
                let schemas = self.store.list_schemas().await?;
                let known = sel.prefix == "oai_dc"
                    || schemas.iter().any(|s| {
                        s.metadata_prefix == sel.prefix && SchemaInfo::of(s).publishable()
                    });
                if !known {
                    return err(
                        Code::CannotDisseminateFormat,
                        format!("{} is not a metadata format of this repository", sel.prefix),
                    );
                }
                if sel.set.is_some()
                    && schemas.is_empty()
                    && self.store.list_sources().await?.is_empty()
                {
                    return err(Code::NoSetHierarchy, "this repository has no sets yet");
                }
                let horizon = self.store.horizon().await?;
                // Change times follow change sequences, so the list can
                // start right after the last change before `from` instead of
                // scanning everything older.
                let after_seq = match &sel.from {
                    Some(f) => self.store.seq_before(f.start()).await?,
                    None => 0,
                };
                let mut st = TokenState {
                    kind,
                    prefix: Some(sel.prefix.clone()),
                    set: sel.set.clone(),
                    from: sel.from.map(|d| d.to_string()),
                    until: sel.until.map(|d| d.to_string()),
                    horizon_seq: horizon.seq,
                    horizon_at: horizon.at.timestamp_micros(),
                    after_seq,
                    after_set: None,
                    cursor: 0,
                    size: 0,
                    expires: 0,
                };
                let count = self.store.count_changes(&change_query(&st, 0)?).await?;
                if count <= 0 {
                    return err(Code::NoRecordsMatch, "no records match the request");
                }
                st.size = count as u64;
                st
            }
            ListArgs::Resume(t) => {
                let st = key.open(t, now.timestamp())?;
                if st.kind != kind {
                    return err(Code::BadResumptionToken, "the token continues another list");
                }
                st
            }
        };
        let q = change_query(&state, self.page_size as i64 + 1)?;
        let mut rows = self.store.changes_stream(q);
        let first = match rows.next().await {
            Some(r) => r?,
            None => return err(Code::NoRecordsMatch, "no records match the request"),
        };
        let response_date = DateTime::from_timestamp_micros(state.horizon_at).unwrap_or(now);
        let mut x = xml::writer();
        envelope_start(&mut x, response_date, &ctx.base_url, &req.echo())?;
        start(&mut x, req.verb(), &[])?;
        let body = ListBody {
            oai: self.clone(),
            key,
            rows,
            next: Some(first),
            x,
            prefix: state.prefix.clone().unwrap_or_default(),
            verb: req.verb(),
            kind,
            state,
            served: 0,
            last_seq: 0,
            done: false,
        };
        // Fused: the compression layer polls its body again after the end.
        let stream = futures_util::stream::unfold(body, |mut b| async move {
            let chunk = b.chunk().await?;
            Some((chunk, b))
        })
        .fuse();
        Ok(xml_response(Body::from_stream(stream)))
    }
}

/// One list response being rendered as its rows arrive.
struct ListBody {
    oai: Arc<Oai>,
    key: TokenKey,
    rows: BoxStream<'static, Result<RecordVersion, StoreError>>,
    next: Option<RecordVersion>,
    x: Xml,
    prefix: String,
    verb: &'static str,
    kind: ListKind,
    state: TokenState,
    served: usize,
    last_seq: i64,
    done: bool,
}

impl ListBody {
    /// The next piece of the body; `None` after the last.
    async fn chunk(&mut self) -> Option<Result<Bytes, io::Error>> {
        if self.done {
            return None;
        }
        if let Err(e) = self.fill().await {
            // The status line is sent; all that is left is to cut the
            // response short so the harvester sees it is broken and retries.
            tracing::error!("OAI-PMH list aborted: {e}");
            self.done = true;
            return Some(Err(e));
        }
        let out = std::mem::replace(self.x.get_mut(), Vec::with_capacity(CHUNK + CHUNK / 4));
        Some(Ok(Bytes::from(out)))
    }

    async fn fill(&mut self) -> io::Result<()> {
        while self.x.get_ref().len() < CHUNK {
            let row = match self.next.take() {
                Some(r) => Some(r),
                None => self
                    .rows
                    .next()
                    .await
                    .transpose()
                    .map_err(io::Error::other)?,
            };
            match row {
                Some(r) if self.served < self.oai.page_size => {
                    self.render(&r).await?;
                    self.served += 1;
                    self.last_seq = r.seq;
                }
                more => return self.finish(more.is_some()),
            }
        }
        Ok(())
    }

    async fn render(&mut self, rec: &RecordVersion) -> io::Result<()> {
        let oai_id = self.oai.oai_id(&rec.id);
        match self.kind {
            ListKind::Records => {
                let info = self
                    .oai
                    .schema_info(&rec.schema_id, rec.schema_version)
                    .await
                    .map_err(io::Error::other)?;
                let crossed = self.oai.xslt_dc(rec, &info, &self.prefix).await;
                write_record(
                    &mut self.x,
                    &oai_id,
                    rec,
                    &self.prefix,
                    &info,
                    crossed.as_deref(),
                )
            }
            _ => xml::header(&mut self.x, &oai_id, rec),
        }
    }

    fn finish(&mut self, has_more: bool) -> io::Result<()> {
        self.done = true;
        let cursor = self.state.cursor;
        let next = has_more.then(|| {
            self.state.after_seq = self.last_seq;
            self.state.cursor += self.served as u64;
            self.oai.seal(&self.key, &mut self.state, Utc::now())
        });
        resumption(&mut self.x, next, cursor, self.state.size)?;
        end(&mut self.x, self.verb)?;
        envelope_end(&mut self.x)?;
        // Dropping the row stream stops the store's reader.
        self.rows = futures_util::stream::empty().boxed();
        Ok(())
    }
}

/// The `resumptionToken` element of a list page: a token while more
/// follows, empty on the last page of a list that was split, absent when
/// the whole list fit in one response.
fn resumption(
    x: &mut Xml,
    next: Option<(String, DateTime<Utc>)>,
    cursor: u64,
    size: u64,
) -> io::Result<()> {
    let size = size.to_string();
    let cursor_s = cursor.to_string();
    match next {
        Some((token, expires)) => element(
            x,
            "resumptionToken",
            &[
                ("expirationDate", &xml::seconds(expires)),
                ("completeListSize", &size),
                ("cursor", &cursor_s),
            ],
            &token,
        ),
        None if cursor > 0 => element(
            x,
            "resumptionToken",
            &[("completeListSize", &size), ("cursor", &cursor_s)],
            "",
        ),
        None => Ok(()),
    }
}

/// One `<record>`: header, metadata in `prefix` unless deleted, and the
/// provenance of harvested records. `crossed` is what an XSLT crosswalk
/// made of the document, used for `oai_dc` in place of the DataCite
/// crosswalk.
fn write_record(
    x: &mut Xml,
    oai_id: &str,
    rec: &RecordVersion,
    prefix: &str,
    info: &SchemaInfo,
    crossed: Option<&[DcField]>,
) -> io::Result<()> {
    start(x, "record", &[])?;
    xml::header(x, oai_id, rec)?;
    if !rec.deleted {
        let native = prefix != "oai_dc" || info.is_oai_dc();
        let altered = match native.then(|| xml::prepare(&rec.document)) {
            Some(Ok(doc)) => {
                start(x, "metadata", &[])?;
                x.get_mut().extend_from_slice(doc.as_bytes());
                false
            }
            failed => {
                if let Some(Err(e)) = failed {
                    tracing::error!(record = %rec.id, "stored document cannot be embedded: {e}");
                }
                if prefix != "oai_dc" {
                    // Nothing truthful to show in this format: header only.
                    return end(x, "record");
                }
                start(x, "metadata", &[])?;
                match crossed {
                    Some(fields) => dc::write_fields(x, fields)?,
                    None => dc::write(x, rec)?,
                }
                true
            }
        };
        end(x, "metadata")?;
        if let Some(p) = &rec.provenance {
            let ns = if altered {
                OAI_DC_NS
            } else {
                info.namespace.as_deref().unwrap_or("")
            };
            xml::provenance(x, p, ns, altered)?;
        }
    }
    end(x, "record")
}

/// The change query of a list's next page.
fn change_query(st: &TokenState, limit: i64) -> Result<ChangeQuery, Failure> {
    let date = |s: &Option<String>| s.as_deref().map(Datestamp::parse).transpose();
    let (Ok(from), Ok(until)) = (date(&st.from), date(&st.until)) else {
        return err(Code::BadResumptionToken, "the token's dates are unreadable");
    };
    let mut q = ChangeQuery {
        after_seq: st.after_seq,
        horizon_seq: st.horizon_seq,
        from: from.map(|d| d.start()),
        until: until.map(|d| d.end_inclusive()),
        metadata_prefix: st.prefix.clone().filter(|p| p != "oai_dc"),
        limit,
        ..ChangeQuery::default()
    };
    if let Some(set) = &st.set {
        let unknown = || {
            Failure::Protocol(OaiError::new(
                Code::NoRecordsMatch,
                format!("there is no set {set} in this repository"),
            ))
        };
        let mut parts = set.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("schema"), Some(id), None) => {
                q.schema_id = Some(SchemaId::parse(id).map_err(|_| unknown())?);
            }
            (Some("source"), Some(id), upstream) => {
                q.source_id = Some(SourceId::parse(id).map_err(|_| unknown())?);
                q.upstream_set = upstream.map(str::to_owned);
            }
            _ => return Err(unknown()),
        }
    }
    Ok(q)
}

/// The first title of a DataCite-style record, if any.
fn first_title(record: &serde_json::Value) -> Option<String> {
    let t = &record["titles"][0];
    t["value"]
        .as_str()
        .or(t.as_str())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// A Host header we are willing to echo into baseURL.
fn is_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]_".contains(c))
}

fn xml_response(body: Body) -> Response {
    (
        StatusCode::OK,
        [(CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

/// An OAI-PMH error response. After badVerb or badArgument the request
/// element carries no attributes (spec 3.2).
fn error_response(ctx: &Ctx, req: Option<&OaiRequest>, e: &OaiError) -> Response {
    let echo = match req {
        Some(r) if !e.code.hides_arguments() => r.echo(),
        _ => Vec::new(),
    };
    let mut x = xml::writer();
    let written = envelope_start(&mut x, Utc::now(), &ctx.base_url, &echo)
        .and_then(|()| element(&mut x, "error", &[("code", e.code.as_str())], &e.message))
        .and_then(|()| envelope_end(&mut x));
    match written {
        Ok(()) => xml_response(Body::from(x.into_inner())),
        Err(e) => {
            tracing::error!("OAI-PMH error response failed: {e}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
