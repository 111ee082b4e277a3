//! DataCite-style records as MetaStore v2 speaks them, mapped onto Sheaf's
//! one model.
//!
//! Going in, a client's record is split: the schema link (`HAS_METADATA`)
//! becomes the version's schema id and version, the `IS_METADATA_FOR`
//! targets become its resources, `acls` its ACL, and what is left —
//! the client-controlled fields, cleaned of nulls, empties and MetaStore's
//! database ids — is the stored `record` JSON. Server-assigned fields
//! (`identifier` `(:tba)`, the `CREATED` date, the `INTERNAL` alternate
//! identifier, `IS_NEW_VERSION_OF`, `version`, `lastUpdate`, `state`) are
//! dropped on the way in and derived from the version on the way out, so a
//! client echoing a record back unchanged writes nothing new.
//!
//! Coming out, [`RecordView`] renders a record with the reference's field
//! order, deriving what a sparse (harvested) record lacks.
//!
//! Depends on the domain model, serde_json and chrono only.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sheaf_domain::model::{AclEntry, Permission, SchemaKind};

use crate::error::ApiError;

/// The placeholder identifier MetaStore assigns until a DOI is minted.
pub(crate) const TBA: &str = "(:tba)";

const HAS_METADATA: &str = "HAS_METADATA";
const IS_METADATA_FOR: &str = "IS_METADATA_FOR";
const IS_NEW_VERSION_OF: &str = "IS_NEW_VERSION_OF";

/// Fields assigned once at creation and kept on updates that omit them.
const CREATION_FIELDS: [&str; 3] = ["creators", "publisher", "publicationYear"];

/// How a metadata record names its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SchemaLink {
    /// `identifierType: INTERNAL`: a schema id, pinned to its current
    /// version at write time.
    Internal(String),
    /// `identifierType: URL`: `…/schemas/{id}?version=N`.
    Url {
        schema_id: String,
        version: Option<i64>,
    },
}

/// A client's record, split into the parts Sheaf's model keeps apart.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ClientRecord {
    /// The record's (or schema's) `id`, when given.
    pub id: Option<String>,
    /// The client-controlled fields: the stored `record` JSON.
    pub fields: Map<String, Value>,
    pub schema_link: Option<SchemaLink>,
    /// The `IS_METADATA_FOR` targets.
    pub resources: Vec<String>,
    /// `None` when the record has no `acls`.
    pub acl: Option<Vec<AclEntry>>,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(format!("record: {}", msg.into()))
}

/// Drops nulls, empty arrays and objects, and MetaStore's nested database
/// `id`s, which are not part of a record's content.
fn clean(v: Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Array(items) => {
            let items: Vec<Value> = items.into_iter().filter_map(clean).collect();
            (!items.is_empty()).then_some(Value::Array(items))
        }
        Value::Object(map) => {
            let map: Map<String, Value> = map
                .into_iter()
                .filter(|(k, _)| k != "id")
                .filter_map(|(k, v)| clean(v).map(|v| (k, v)))
                .collect();
            (!map.is_empty()).then_some(Value::Object(map))
        }
        other => Some(other),
    }
}

/// The elements of an array member; null counts as empty.
fn array(key: &str, v: Value) -> Result<Vec<Value>, ApiError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => Ok(items),
        _ => Err(bad(format!("{key} must be an array"))),
    }
}

fn str_member<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    at: &str,
) -> Result<Option<&'a str>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(format!("{at}.{key} must be a string"))),
    }
}

/// Parses the `record` part of a request.
pub(crate) fn parse_record(bytes: &[u8]) -> Result<ClientRecord, ApiError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("record is not valid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(bad("must be a JSON object"));
    };
    let mut out = ClientRecord {
        id: None,
        fields: Map::new(),
        schema_link: None,
        resources: Vec::new(),
        acl: None,
    };
    for (key, value) in obj {
        match key.as_str() {
            "id" => {
                out.id = match value {
                    Value::Null => None,
                    Value::String(s) if s.is_empty() => None,
                    Value::String(s) => Some(s),
                    _ => return Err(bad("id must be a string")),
                }
            }
            // Assigned by the server, derived from the version on output.
            "version" | "lastUpdate" | "state" => {}
            "identifier" => {
                if let Some(c) = clean(value) {
                    if !c.is_object() {
                        return Err(bad("identifier must be an object"));
                    }
                    if c.get("value").and_then(Value::as_str) != Some(TBA) {
                        out.fields.insert(key, c);
                    }
                }
            }
            "publicationYear" => match value {
                Value::Null => {}
                Value::String(s) if s.is_empty() => {}
                Value::String(s) => {
                    out.fields.insert(key, Value::String(s));
                }
                Value::Number(n) => {
                    out.fields.insert(key, Value::String(n.to_string()));
                }
                _ => return Err(bad("publicationYear must be a string")),
            },
            "dates" => {
                let mut kept = Vec::new();
                for (i, d) in array("dates", value)?.into_iter().enumerate() {
                    let Value::Object(obj) = &d else {
                        return Err(bad(format!("dates[{i}] must be an object")));
                    };
                    if str_member(obj, "type", &format!("dates[{i}]"))? == Some("CREATED") {
                        continue;
                    }
                    kept.extend(clean(d));
                }
                if !kept.is_empty() {
                    out.fields.insert(key, Value::Array(kept));
                }
            }
            "alternateIdentifiers" => {
                let mut kept = Vec::new();
                for (i, a) in array("alternateIdentifiers", value)?
                    .into_iter()
                    .enumerate()
                {
                    let Value::Object(obj) = &a else {
                        return Err(bad(format!("alternateIdentifiers[{i}] must be an object")));
                    };
                    let at = format!("alternateIdentifiers[{i}]");
                    if str_member(obj, "identifierType", &at)? == Some("INTERNAL") {
                        continue;
                    }
                    kept.extend(clean(a));
                }
                if !kept.is_empty() {
                    out.fields.insert(key, Value::Array(kept));
                }
            }
            "relatedIdentifiers" => {
                let mut kept = Vec::new();
                for (i, r) in array("relatedIdentifiers", value)?.into_iter().enumerate() {
                    let at = format!("relatedIdentifiers[{i}]");
                    let Value::Object(obj) = &r else {
                        return Err(bad(format!("{at} must be an object")));
                    };
                    let relation = str_member(obj, "relationType", &at)?;
                    let target = str_member(obj, "value", &at)?.map(str::trim);
                    match relation {
                        Some(HAS_METADATA) => {
                            let target = target
                                .filter(|t| !t.is_empty())
                                .ok_or_else(|| bad(format!("{at} names no schema")))?;
                            if out.schema_link.is_some() {
                                return Err(bad("more than one HAS_METADATA schema link"));
                            }
                            let kind = str_member(obj, "identifierType", &at)?;
                            out.schema_link = Some(if kind == Some("INTERNAL") {
                                SchemaLink::Internal(target.to_owned())
                            } else {
                                parse_schema_url(target)?
                            });
                        }
                        Some(IS_NEW_VERSION_OF) => {}
                        Some(IS_METADATA_FOR) => {
                            let target = target
                                .filter(|t| !t.is_empty())
                                .ok_or_else(|| bad(format!("{at} names no resource")))?;
                            out.resources.push(target.to_owned());
                            kept.extend(clean(r));
                        }
                        _ => kept.extend(clean(r)),
                    }
                }
                if !kept.is_empty() {
                    out.fields.insert(key, Value::Array(kept));
                }
            }
            "acls" => {
                if !value.is_null() {
                    out.acl = Some(parse_acl(value)?);
                }
            }
            _ => {
                if let Some(c) = clean(value) {
                    out.fields.insert(key, c);
                }
            }
        }
    }
    Ok(out)
}

/// Reads `…/schemas/{id}?version=N` (any host: clients may reach Sheaf
/// through another base URL) or a bare schema id.
fn parse_schema_url(url: &str) -> Result<SchemaLink, ApiError> {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let path = path.split('#').next().unwrap_or(path).trim_end_matches('/');
    let mut segments = path.rsplit('/');
    let last = segments.next().unwrap_or_default();
    let schema_id = percent_encoding::percent_decode_str(last)
        .decode_utf8()
        .map_err(|_| bad(format!("schema URL {url} is not UTF-8")))?
        .into_owned();
    if path.contains('/') && segments.next() != Some("schemas") {
        return Err(ApiError::Unprocessable(format!(
            "schema URL {url} does not name a schema (…/schemas/{{id}}?version=N)"
        )));
    }
    let mut version = None;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if k == "version" {
            version = Some(
                v.parse::<i64>()
                    .ok()
                    .filter(|v| *v >= 1)
                    .ok_or_else(|| bad(format!("schema URL {url}: version must be 1 or more")))?,
            );
        }
    }
    Ok(SchemaLink::Url { schema_id, version })
}

fn parse_acl(value: Value) -> Result<Vec<AclEntry>, ApiError> {
    let mut acl: Vec<AclEntry> = Vec::new();
    for (i, e) in array("acls", value)?.into_iter().enumerate() {
        let at = format!("acls[{i}]");
        let Value::Object(obj) = &e else {
            return Err(bad(format!("{at} must be an object")));
        };
        let sid = str_member(obj, "sid", &at)?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad(format!("{at}.sid is missing")))?;
        let permission = str_member(obj, "permission", &at)?
            .ok_or_else(|| bad(format!("{at}.permission is missing")))?;
        if permission == "NONE" {
            continue;
        }
        let permission = Permission::parse(permission).ok_or_else(|| {
            bad(format!(
                "{at}.permission {permission:?} is not READ, WRITE or ADMINISTRATE"
            ))
        })?;
        // A subject listed twice keeps its strongest permission, in the
        // position it was first listed.
        match acl.iter_mut().find(|x| x.sid == sid) {
            Some(x) => x.permission = x.permission.max(permission),
            None => acl.push(AclEntry {
                sid: sid.to_owned(),
                permission,
            }),
        }
    }
    Ok(acl)
}

/// The `resourceType` Sheaf derives when a record has none.
pub(crate) fn default_resource_type(kind: SchemaKind, is_schema: bool) -> &'static str {
    match (kind, is_schema) {
        (SchemaKind::Xsd, false) => "XML_Metadata",
        (SchemaKind::Json, false) => "JSON_Metadata",
        (SchemaKind::Xsd, true) => "XML_Schema",
        (SchemaKind::Json, true) => "JSON_Schema",
    }
}

fn resource_type_value(value: &str) -> Value {
    json!({"value": value, "typeGeneral": "MODEL"})
}

/// Drops a `resourceType` equal to the derived one, so that echoing the
/// derived value back changes nothing.
pub(crate) fn strip_default_resource_type(fields: &mut Map<String, Value>, default: &str) {
    if fields.get("resourceType") == Some(&resource_type_value(default)) {
        fields.remove("resourceType");
    }
}

/// Fills `creators`, `publisher` and `publicationYear` of a new record.
pub(crate) fn assign_creation_fields(
    fields: &mut Map<String, Value>,
    sid: &str,
    now: DateTime<Utc>,
) {
    fields
        .entry("creators")
        .or_insert_with(|| json!([{"givenName": sid}]));
    fields
        .entry("publisher")
        .or_insert_with(|| Value::String(sid.to_owned()));
    fields
        .entry("publicationYear")
        .or_insert_with(|| Value::String(now.year().to_string()));
}

/// Keeps the creation fields of `previous` that an update omits.
pub(crate) fn carry_creation_fields(fields: &mut Map<String, Value>, previous: &Value) {
    for key in CREATION_FIELDS {
        if let (false, Some(v)) = (fields.contains_key(key), previous.get(key)) {
            fields.insert(key.to_owned(), v.clone());
        }
    }
}

/// An instant as MetaStore writes `lastUpdate`: UTC, fractional seconds
/// without trailing zeros.
pub(crate) fn instant(t: DateTime<Utc>) -> String {
    let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let micros = t.nanosecond() / 1000 % 1_000_000;
    if micros != 0 {
        let frac = format!("{micros:06}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Guesses the DataCite `relatedIdentifierType` of a bare resource id.
fn identifier_type(resource: &str) -> &'static str {
    let lower = resource.to_ascii_lowercase();
    if lower.starts_with("10.") || lower.starts_with("doi:") || lower.contains("doi.org/") {
        "DOI"
    } else if lower.starts_with("urn:") {
        "URN"
    } else if lower.contains("://") {
        "URL"
    } else {
        "INTERNAL"
    }
}

/// Everything needed to render one version as a DataCite record.
pub(crate) struct RecordView<'a> {
    pub id: &'a str,
    /// The stored client fields (an object; anything else counts as empty).
    pub fields: &'a Value,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub last_update: DateTime<Utc>,
    pub deleted: bool,
    /// The `resourceType` value to show when the record has none.
    pub default_type: &'static str,
    /// Who to name as creator and publisher when the record does not say.
    pub fallback_sid: &'a str,
    /// The `HAS_METADATA` target (metadata records only).
    pub schema_url: Option<String>,
    /// The `IS_NEW_VERSION_OF` target, for versions after the first.
    pub previous_url: Option<String>,
    pub resources: &'a [String],
    pub acl: &'a [AclEntry],
}

/// Members rendered by name; every other stored member follows them.
const KNOWN: [&str; 24] = [
    "id",
    "identifier",
    "creators",
    "titles",
    "publisher",
    "publicationYear",
    "resourceType",
    "subjects",
    "contributors",
    "dates",
    "relatedIdentifiers",
    "descriptions",
    "geoLocations",
    "language",
    "alternateIdentifiers",
    "sizes",
    "formats",
    "version",
    "rights",
    "fundingReferences",
    "lastUpdate",
    "state",
    "embargoDate",
    "acls",
];

/// One member value: the client's, or one Sheaf derives. Derived values
/// are typed so that rendering a list allocates no JSON maps.
#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum Item<'a> {
    Client(&'a Value),
    Derived(Derived<'a>),
}

/// The values Sheaf derives, each serialised in the reference's key order.
#[derive(Serialize)]
#[serde(untagged, rename_all_fields = "camelCase")]
pub(crate) enum Derived<'a> {
    Identifier {
        value: &'a str,
        identifier_type: &'a str,
    },
    Relation {
        identifier_type: &'a str,
        value: Cow<'a, str>,
        relation_type: &'a str,
    },
    Date {
        value: String,
        #[serde(rename = "type")]
        kind: &'a str,
    },
    ResourceType {
        value: &'a str,
        type_general: &'a str,
    },
    Creators([Creator<'a>; 1]),
    Text(Cow<'a, str>),
}

/// A creator named by subject.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Creator<'a> {
    given_name: &'a str,
}

/// A record on the wire, in the reference's member order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RecordOut<'a> {
    id: &'a str,
    identifier: Item<'a>,
    creators: Item<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    titles: Option<&'a Value>,
    publisher: Item<'a>,
    publication_year: Item<'a>,
    resource_type: Item<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subjects: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    contributors: Option<&'a Value>,
    dates: Vec<Item<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    related_identifiers: Vec<Item<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    descriptions: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    geo_locations: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    language: Option<&'a Value>,
    alternate_identifiers: Vec<Item<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sizes: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    formats: Option<&'a Value>,
    version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    rights: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    funding_references: Option<&'a Value>,
    last_update: String,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    embargo_date: Option<&'a Value>,
    acls: &'a [AclEntry],
    #[serde(flatten)]
    extra: BTreeMap<&'a str, &'a Value>,
}

fn array_items(v: Option<&Value>) -> impl Iterator<Item = &Value> {
    v.and_then(Value::as_array).into_iter().flatten()
}

fn relation<'a>(identifier_type: &'a str, value: Cow<'a, str>, relation_type: &'a str) -> Item<'a> {
    Item::Derived(Derived::Relation {
        identifier_type,
        value,
        relation_type,
    })
}

impl<'a> RecordView<'a> {
    /// Renders the record.
    pub(crate) fn render(self) -> RecordOut<'a> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        let f: &'a Map<String, Value> = self
            .fields
            .as_object()
            .unwrap_or_else(|| EMPTY.get_or_init(Map::new));
        let get = |k: &str| f.get(k);
        let mut dates = vec![Item::Derived(Derived::Date {
            value: self.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            kind: "CREATED",
        })];
        dates.extend(array_items(get("dates")).map(Item::Client));

        let mut related: Vec<Item<'a>> = Vec::new();
        let mut listed: Vec<&str> = Vec::new();
        for r in array_items(get("relatedIdentifiers")) {
            if r.get("relationType").and_then(Value::as_str) == Some(IS_METADATA_FOR) {
                listed.extend(r.get("value").and_then(Value::as_str));
            }
            related.push(Item::Client(r));
        }
        // A harvested record knows its resources but may not list them.
        for res in self
            .resources
            .iter()
            .filter(|r| !listed.contains(&r.as_str()))
        {
            related.push(relation(
                identifier_type(res),
                Cow::Borrowed(res.as_str()),
                IS_METADATA_FOR,
            ));
        }
        if let Some(url) = self.schema_url {
            related.push(relation("URL", Cow::Owned(url), HAS_METADATA));
        }
        if let Some(url) = self.previous_url {
            related.push(relation("URL", Cow::Owned(url), IS_NEW_VERSION_OF));
        }

        let mut alternates = vec![Item::Derived(Derived::Identifier {
            value: self.id,
            identifier_type: "INTERNAL",
        })];
        alternates.extend(array_items(get("alternateIdentifiers")).map(Item::Client));

        let sid = self.fallback_sid;
        let or =
            |k: &str, derived: Derived<'a>| get(k).map_or(Item::Derived(derived), Item::Client);
        RecordOut {
            id: self.id,
            identifier: or(
                "identifier",
                Derived::Identifier {
                    value: TBA,
                    identifier_type: "DOI",
                },
            ),
            creators: or("creators", Derived::Creators([Creator { given_name: sid }])),
            titles: get("titles"),
            publisher: or("publisher", Derived::Text(Cow::Borrowed(sid))),
            publication_year: or(
                "publicationYear",
                Derived::Text(Cow::Owned(self.created_at.year().to_string())),
            ),
            resource_type: or(
                "resourceType",
                Derived::ResourceType {
                    value: self.default_type,
                    type_general: "MODEL",
                },
            ),
            subjects: get("subjects"),
            contributors: get("contributors"),
            dates,
            related_identifiers: related,
            descriptions: get("descriptions"),
            geo_locations: get("geoLocations"),
            language: get("language"),
            alternate_identifiers: alternates,
            sizes: get("sizes"),
            formats: get("formats"),
            version: self.version.to_string(),
            rights: get("rights"),
            funding_references: get("fundingReferences"),
            last_update: instant(self.last_update),
            state: if self.deleted { "REVOKED" } else { "VOLATILE" },
            embargo_date: get("embargoDate"),
            acls: self.acl,
            extra: f
                .iter()
                .filter(|(k, _)| !KNOWN.contains(&k.as_str()))
                .map(|(k, v)| (k.as_str(), v))
                .collect(),
        }
    }
}

/// The subject to name as creator when a record does not say: its first
/// administrator, else `fallback`.
pub(crate) fn first_administrator<'a>(acl: &'a [AclEntry], fallback: &'a str) -> &'a str {
    acl.iter()
        .find(|e| e.permission == Permission::Administrate)
        .map_or(fallback, |e| e.sid.as_str())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn parse(s: &str) -> ClientRecord {
        parse_record(s.as_bytes()).expect("parses")
    }

    #[test]
    fn not_json_names_line_and_column() {
        let err = parse_record(b"{\n  \"titles\": [,]\n}").expect_err("invalid");
        let text = err.to_string();
        assert!(matches!(err, ApiError::BadRequest(_)));
        assert!(text.contains("line 2 column"), "{text}");
    }

    #[test]
    fn server_fields_are_dropped_and_links_split_off() {
        let r = parse(
            r#"{"id":"23dd","identifier":{"id":3,"value":"(:tba)","identifierType":"DOI"},
            "creators":[{"id":3,"familyName":null,"givenName":"SELF","affiliations":[]}],
            "titles":[{"id":3,"value":"T","titleType":null,"lang":null}],
            "dates":[{"id":3,"value":"2024-11-25T13:50:12Z","type":"CREATED"}],
            "relatedIdentifiers":[
              {"id":2,"identifierType":"URL","value":"https://repo/anyResourceId","relationType":"IS_METADATA_FOR","scheme":null},
              {"id":3,"identifierType":"URL","value":"http://h/metastore/api/v2/schemas/my_first_xsd?version=2","relationType":"HAS_METADATA"},
              {"identifierType":"URL","value":"http://h/x?version=1","relationType":"IS_NEW_VERSION_OF"}],
            "alternateIdentifiers":[{"id":3,"value":"23dd","identifierType":"INTERNAL"}],
            "version":"1","lastUpdate":"2024-11-25T13:50:12.582Z","state":"VOLATILE","embargoDate":null,
            "subjects":[],"acls":[{"id":null,"sid":"guest","permission":"READ"},{"id":4,"sid":"SELF","permission":"ADMINISTRATE"}]}"#,
        );
        assert_eq!(r.id.as_deref(), Some("23dd"));
        assert_eq!(
            r.schema_link,
            Some(SchemaLink::Url {
                schema_id: "my_first_xsd".into(),
                version: Some(2)
            })
        );
        assert_eq!(r.resources, vec!["https://repo/anyResourceId".to_owned()]);
        assert_eq!(r.acl.as_ref().map(Vec::len), Some(2));
        assert_eq!(
            Value::Object(r.fields),
            json!({
                "creators": [{"givenName": "SELF"}],
                "titles": [{"value": "T"}],
                "relatedIdentifiers": [{"identifierType": "URL", "value": "https://repo/anyResourceId", "relationType": "IS_METADATA_FOR"}],
            })
        );
    }

    #[test]
    fn internal_schema_link_and_bad_members() {
        let r = parse(
            r#"{"relatedIdentifiers":[{"identifierType":"INTERNAL","value":"my_first_xsd","relationType":"HAS_METADATA"}]}"#,
        );
        assert_eq!(
            r.schema_link,
            Some(SchemaLink::Internal("my_first_xsd".into()))
        );
        assert!(parse_record(br#"{"acls":[{"sid":"a","permission":"ROOT"}]}"#).is_err());
        assert!(parse_record(br#"{"relatedIdentifiers":{}}"#).is_err());
        assert!(parse_record(b"[1]").is_err());
        assert!(
            parse_record(
                br#"{"relatedIdentifiers":[{"value":"http://h/api/v2/metadata/x","relationType":"HAS_METADATA"}]}"#
            )
            .is_err()
        );
    }

    #[test]
    fn instants_trim_trailing_zeros() {
        let t = Utc
            .with_ymd_and_hms(2024, 11, 25, 13, 50, 12)
            .single()
            .expect("time");
        assert_eq!(instant(t), "2024-11-25T13:50:12Z");
        let t = t + chrono::Duration::milliseconds(80);
        assert_eq!(instant(t), "2024-11-25T13:50:12.08Z");
    }

    #[test]
    fn a_sparse_record_renders_derived_fields() {
        let t = Utc
            .with_ymd_and_hms(2024, 11, 25, 13, 50, 12)
            .single()
            .expect("time");
        let fields = json!({"titles": [{"value": "T"}], "custom": 1});
        let resources = vec!["10.1234/x".to_owned()];
        let view = RecordView {
            id: "r1",
            fields: &fields,
            version: 2,
            created_at: t,
            last_update: t,
            deleted: false,
            default_type: "XML_Metadata",
            fallback_sid: "src",
            schema_url: Some("http://h/api/v2/schemas/s?version=1".into()),
            previous_url: Some("http://h/api/v2/metadata/r1?version=1".into()),
            resources: &resources,
            acl: &[],
        };
        let out = serde_json::to_value(view.render()).expect("json");
        assert_eq!(out["identifier"]["value"], TBA);
        assert_eq!(out["creators"][0]["givenName"], "src");
        assert_eq!(out["publisher"], "src");
        assert_eq!(out["publicationYear"], "2024");
        assert_eq!(out["resourceType"]["value"], "XML_Metadata");
        assert_eq!(out["dates"][0]["type"], "CREATED");
        assert_eq!(out["relatedIdentifiers"][0]["identifierType"], "DOI");
        assert_eq!(out["relatedIdentifiers"][1]["relationType"], HAS_METADATA);
        assert_eq!(
            out["relatedIdentifiers"][2]["relationType"],
            IS_NEW_VERSION_OF
        );
        assert_eq!(out["alternateIdentifiers"][0]["identifierType"], "INTERNAL");
        assert_eq!(out["version"], "2");
        assert_eq!(out["state"], "VOLATILE");
        assert_eq!(out["custom"], 1);
    }
}
