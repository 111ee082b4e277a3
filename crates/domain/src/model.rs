//! The one model: every face (harvester, OAI-PMH, REST) reads and writes
//! these types, never a parallel representation.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{ContentHash, RecordId, SchemaId, SourceId, etag};

/// The language a schema document is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SchemaKind {
    /// W3C XML Schema 1.0.
    Xsd,
    /// JSON Schema (draft 4, 6, 7, 2019-09 or 2020-12).
    Json,
}

impl SchemaKind {
    /// The spelling stored in the database and used by the REST API
    /// (`XML`/`JSON`, as MetaStore's `type`).
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaKind::Xsd => "XML",
            SchemaKind::Json => "JSON",
        }
    }

    /// Reads [`SchemaKind::as_str`]'s spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "XML" | "XSD" => Some(SchemaKind::Xsd),
            "JSON" => Some(SchemaKind::Json),
            _ => None,
        }
    }
}

/// What a caller gives to register a schema version.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSchema {
    pub schema_id: SchemaId,
    pub kind: SchemaKind,
    /// For XSD, the `targetNamespace` read from the document.
    pub namespace: Option<String>,
    /// The OAI `metadataPrefix` this schema is published under.
    pub metadata_prefix: String,
    pub document: Vec<u8>,
    /// The DataCite-style record (titles, acls, …) as given by the client.
    pub record: Value,
}

/// One immutable version of a schema.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaVersion {
    pub schema_id: SchemaId,
    pub version: i64,
    pub kind: SchemaKind,
    pub namespace: Option<String>,
    pub metadata_prefix: String,
    pub document: Vec<u8>,
    pub record: Value,
    pub content_hash: ContentHash,
    /// When version 1 was created.
    pub created_at: DateTime<Utc>,
    /// When this version was created.
    pub updated_at: DateTime<Utc>,
}

impl SchemaVersion {
    /// The ETag of this version.
    pub fn etag(&self) -> String {
        etag(self.schema_id.as_str(), self.version, &self.content_hash)
    }
}

/// A permission in a record's access control list, as in MetaStore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Permission {
    Read,
    Write,
    Administrate,
}

impl Permission {
    /// Stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "READ",
            Permission::Write => "WRITE",
            Permission::Administrate => "ADMINISTRATE",
        }
    }

    /// Reads the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "READ" => Some(Permission::Read),
            "WRITE" => Some(Permission::Write),
            "ADMINISTRATE" => Some(Permission::Administrate),
            _ => None,
        }
    }

    /// Whether holding `self` grants `wanted` (ADMINISTRATE ⊇ WRITE ⊇ READ).
    pub fn grants(self, wanted: Permission) -> bool {
        self >= wanted
    }
}

/// One ACL entry: a subject id and what it may do.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclEntry {
    pub sid: String,
    pub permission: Permission,
}

/// Where a harvested record came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    pub harvest_time: DateTime<Utc>,
    pub base_url: String,
    pub oai_identifier: String,
    /// The upstream datestamp, as the provider wrote it.
    pub datestamp: String,
    pub metadata_namespace: Option<String>,
    #[serde(default)]
    pub set_specs: Vec<String>,
}

/// What a caller gives to write a record version.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordWrite {
    pub id: RecordId,
    pub schema_id: SchemaId,
    pub schema_version: i64,
    pub document: Vec<u8>,
    /// The DataCite-style record fields the client controls; server-assigned
    /// fields (version, lastUpdate, …) are not part of it.
    pub record: Value,
    /// The resources this record `IS_METADATA_FOR` (URLs, DOIs, handles).
    pub resources: Vec<String>,
    pub acl: Vec<AclEntry>,
    pub source_id: Option<SourceId>,
    pub provenance: Option<Provenance>,
}

impl RecordWrite {
    /// The hash deciding whether this write makes a new version: document,
    /// schema link, resource links, ACL and record fields — not provenance.
    pub fn content_hash(&self) -> ContentHash {
        let mut resources = self.resources.clone();
        let mut acl = self.acl.clone();
        normalise(&mut resources, &mut acl);
        self.hash_with(&resources, &json(&acl), &self.record.to_string())
    }

    /// Sorts and dedups the resources and ACL, as the store keeps them.
    pub fn normalise(&mut self) {
        normalise(&mut self.resources, &mut self.acl);
    }

    /// Normalises the write and renders what the store writes as text,
    /// once: the content hash and the JSON of the record fields,
    /// resources, ACL and provenance.
    pub fn render(&mut self) -> Rendered {
        self.normalise();
        let record = self.record.to_string();
        let acl = json(&self.acl);
        Rendered {
            hash: self.hash_with(&self.resources, &acl, &record),
            record,
            resources: json(&self.resources),
            acl,
            provenance: self.provenance.as_ref().map(json),
        }
    }

    fn hash_with(&self, resources: &[String], acl_json: &str, record: &str) -> ContentHash {
        let resources = resources.join("\n");
        let schema_version = self.schema_version.to_string();
        let source = self.source_id.as_ref().map(|s| s.as_str()).unwrap_or("");
        ContentHash::of_parts([
            self.document.as_slice(),
            self.schema_id.as_str().as_bytes(),
            schema_version.as_bytes(),
            resources.as_bytes(),
            acl_json.as_bytes(),
            record.as_bytes(),
            source.as_bytes(),
        ])
    }
}

fn normalise(resources: &mut Vec<String>, acl: &mut Vec<AclEntry>) {
    resources.sort();
    resources.dedup();
    acl.sort();
    acl.dedup();
}

/// Compact JSON of our own plain data types (which cannot fail to
/// serialise).
fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

/// What the store writes of a [`RecordWrite`] as text, rendered by whoever
/// prepares the write ([`RecordWrite::render`]) so that the store's serial
/// commit path binds it instead of serialising it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// [`RecordWrite::content_hash`].
    pub hash: ContentHash,
    /// The record fields as compact JSON.
    pub record: String,
    /// The (sorted) resources as JSON.
    pub resources: String,
    /// The (sorted) ACL as JSON.
    pub acl: String,
    /// The provenance as JSON.
    pub provenance: Option<String>,
}

/// How a write states the version it expects to replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The record must not exist yet (a create).
    Absent,
    /// The current version must be exactly this one (an update with `If-Match`).
    Version(i64),
    /// Whatever is there (the harvester's upsert, which owns its records).
    Any,
}

/// One immutable version of a record. Tombstones are versions too.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordVersion {
    pub id: RecordId,
    pub version: i64,
    pub deleted: bool,
    pub schema_id: SchemaId,
    pub schema_version: i64,
    /// Empty for a tombstone.
    pub document: Vec<u8>,
    pub record: Value,
    pub resources: Vec<String>,
    pub acl: Vec<AclEntry>,
    pub source_id: Option<SourceId>,
    pub provenance: Option<Provenance>,
    pub content_hash: ContentHash,
    /// The change sequence: strictly increasing over all changes, in commit order.
    pub seq: i64,
    /// The change time: never decreasing in `seq` order.
    pub changed_at: DateTime<Utc>,
    /// When version 1 was created.
    pub created_at: DateTime<Utc>,
}

impl RecordVersion {
    /// The ETag of this version.
    pub fn etag(&self) -> String {
        etag(self.id.as_str(), self.version, &self.content_hash)
    }
}

/// What a write did.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOutcome {
    Created(RecordVersion),
    Updated(RecordVersion),
    /// Nothing changed, nothing written; the current version.
    Unchanged(RecordVersion),
    /// A tombstone was written.
    Deleted(RecordVersion),
}

impl WriteOutcome {
    /// The version that is current after the write.
    pub fn version(&self) -> &RecordVersion {
        match self {
            WriteOutcome::Created(v)
            | WriteOutcome::Updated(v)
            | WriteOutcome::Unchanged(v)
            | WriteOutcome::Deleted(v) => v,
        }
    }

    /// Consumes the outcome into the current version.
    pub fn into_version(self) -> RecordVersion {
        match self {
            WriteOutcome::Created(v)
            | WriteOutcome::Updated(v)
            | WriteOutcome::Unchanged(v)
            | WriteOutcome::Deleted(v) => v,
        }
    }
}

/// A document that failed validation, kept with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRejection {
    /// Where it came from: `harvest`, `rest`, `cli`, …
    pub origin: String,
    pub source_id: Option<SourceId>,
    pub run_id: Option<i64>,
    /// The upstream identifier or the record id, when known.
    pub identifier: Option<String>,
    pub schema_id: Option<SchemaId>,
    pub schema_version: Option<i64>,
    pub message: String,
    pub document: Vec<u8>,
}

/// A stored rejection.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub id: i64,
    pub rejection: NewRejection,
    pub created_at: DateTime<Utc>,
}

/// A harvest source as registered from its config file.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub id: SourceId,
    pub base_url: String,
    pub enabled: bool,
    /// The full configuration, as JSON, for the REST face and for auditing.
    pub config: Value,
    pub updated_at: DateTime<Utc>,
}

/// How a harvest run ended (or that it has not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    /// Stopped on request (SIGTERM) after committing its last page.
    Interrupted,
}

impl RunStatus {
    /// Stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }

    /// Reads the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "running" => Some(RunStatus::Running),
            "succeeded" => Some(RunStatus::Succeeded),
            "failed" => Some(RunStatus::Failed),
            "interrupted" => Some(RunStatus::Interrupted),
            _ => None,
        }
    }
}

/// Per-run counts. Invariant: `seen = created + updated + unchanged + deleted + rejected`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounts {
    pub seen: i64,
    pub created: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub deleted: i64,
    pub rejected: i64,
}

impl RunCounts {
    /// Whether the "nothing lost" invariant holds.
    pub fn balanced(&self) -> bool {
        self.seen == self.created + self.updated + self.unchanged + self.deleted + self.rejected
    }

    /// Adds another batch's counts.
    pub fn add(&mut self, o: &RunCounts) {
        self.seen += o.seen;
        self.created += o.created;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
        self.deleted += o.deleted;
        self.rejected += o.rejected;
    }
}

/// One execution against one source.
#[derive(Debug, Clone, PartialEq)]
pub struct HarvestRun {
    pub id: i64,
    pub source_id: SourceId,
    pub status: RunStatus,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The window's `from`/`until` as sent to the provider.
    pub window_from: Option<String>,
    pub window_until: Option<String>,
    /// Where to resume: opaque to the store (token, set, window position).
    pub checkpoint: Option<Value>,
    /// The provider's `responseDate` of the first page: the next run's `from`.
    pub response_date: Option<String>,
    pub counts: RunCounts,
    pub message: Option<String>,
}

/// One item of a harvested page, committed together with the checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub enum PageItem {
    /// A write; it makes a new version unless its content hash equals the
    /// live version's. `rendered` must be the write's own
    /// [`RecordWrite::render`] (made by whoever prepares the write, off the
    /// store's serial commit path; [`PageItem::put`] and
    /// [`PageItem::harvested`] do). `input` is the harvester's key of what
    /// the write was derived from (source, schema, resource rule, OAI
    /// identifier, document), kept with the version so that the next
    /// harvest can recognise an unchanged record before deriving anything
    /// from it (see `Keep`). The record fields travel as
    /// `rendered.record`, which is what the store writes; [`PageItem::put`]
    /// and [`PageItem::harvested`] leave `write.record` `Null`.
    Put {
        write: Box<RecordWrite>,
        rendered: Rendered,
        input: Option<ContentHash>,
    },
    /// A record the harvester found unchanged by its input key (the live
    /// version's `input`), and so did not prepare. It counts as
    /// `unchanged`; if the record's live version no longer has that key
    /// when the page commits, the whole page is refused as stale (nothing
    /// is written) and the harvester prepares the record after all.
    Keep {
        id: RecordId,
        input: ContentHash,
    },
    /// An upstream `status="deleted"` header.
    Delete {
        id: RecordId,
        provenance: Option<Provenance>,
    },
    Reject(NewRejection),
}

impl PageItem {
    /// A write without an input key.
    pub fn put(write: RecordWrite) -> Self {
        Self::rendered(write, None)
    }

    /// A harvested write with the key of its input.
    pub fn harvested(write: RecordWrite, input: ContentHash) -> Self {
        Self::rendered(write, Some(input))
    }

    fn rendered(mut write: RecordWrite, input: Option<ContentHash>) -> Self {
        let rendered = write.render();
        // The fields' tree (dozens of allocations) is freed here, on the
        // thread that built it, not on the store's serial commit path.
        write.record = Value::Null;
        PageItem::Put {
            write: Box::new(write),
            rendered,
            input,
        }
    }
}

/// The hashes of a record's live (not deleted) version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveHashes {
    pub content: ContentHash,
    /// The input key it was harvested with, if any.
    pub input: Option<ContentHash>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rendering_normalises_and_matches_the_content_hash() {
        let mut write = RecordWrite {
            id: RecordId::parse("r1").expect("id"),
            schema_id: SchemaId::parse("dc").expect("schema"),
            schema_version: 2,
            document: b"<dc/>".to_vec(),
            record: json!({"titles": [{"value": "T"}], "creators": []}),
            resources: vec![
                "https://b.example".into(),
                "https://a.example".into(),
                "https://b.example".into(),
            ],
            acl: vec![
                AclEntry {
                    sid: "z".into(),
                    permission: Permission::Read,
                },
                AclEntry {
                    sid: "a".into(),
                    permission: Permission::Write,
                },
                AclEntry {
                    sid: "z".into(),
                    permission: Permission::Read,
                },
            ],
            source_id: Some(SourceId::parse("src").expect("source")),
            provenance: Some(Provenance {
                harvest_time: DateTime::<Utc>::UNIX_EPOCH,
                base_url: "https://p.example/oai".into(),
                oai_identifier: "oai:p:1".into(),
                datestamp: "2026-01-01".into(),
                metadata_namespace: None,
                set_specs: vec!["s".into()],
            }),
        };
        let before = write.content_hash();
        let rendered = write.render();
        assert_eq!(
            rendered.hash, before,
            "the hash does not depend on order or repeats"
        );
        assert_eq!(rendered.hash, write.content_hash());
        assert_eq!(write.resources, ["https://a.example", "https://b.example"]);
        assert_eq!(
            write.acl.iter().map(|e| e.sid.as_str()).collect::<Vec<_>>(),
            ["a", "z"]
        );
        assert_eq!(rendered.record, write.record.to_string());
        assert_eq!(
            rendered.resources,
            serde_json::to_string(&write.resources).expect("json")
        );
        assert_eq!(
            rendered.acl,
            serde_json::to_string(&write.acl).expect("json")
        );
        let provenance: Provenance =
            serde_json::from_str(rendered.provenance.as_deref().expect("provenance"))
                .expect("json");
        assert_eq!(Some(provenance), write.provenance);

        // Provenance is not content; the record fields are.
        write.provenance = None;
        assert_eq!(write.render().hash, before);
        write.record = json!({"titles": [{"value": "U"}]});
        assert_ne!(write.render().hash, before);
    }
}
