//! Source configuration: one `harvest-configs/<id>.toml` per provider,
//! loaded and validated field by field so every error names its file and
//! field (`sheaf config check`).
//!
//! Depends on `sheaf-domain` (ids), croner (cron strings) and
//! [`crate::resource`] (the resource-id path subset).
//!
//! A file looks like this (every key but `base_url` and `metadata_prefix`
//! is optional; durations are `"500ms"`, `"3s"`, `"2m"`, `"1h"`, `"1d"`,
//! combinations like `"1h30m"`, or a number of seconds):
//!
//! ```toml
//! base_url = "https://example.org/oai"
//! metadata_prefix = "oai_dc"
//! sets = ["physics"]
//! schedule = "0 3 * * *"            # cron, 5 fields or 6 with seconds first
//! schema = "oai_dc"                 # default: chosen by metadata prefix
//! resource_id = { xpath = "//dc:identifier[url]" }   # or "oai-identifier"
//! window = "month"                  # none | month | day | hour
//! pacing = "3s"                     # minimum interval between requests
//! timeout = "120s"                  # per request, body included
//! list_method = "list-records"      # or "identifiers-then-get-record"
//! enabled = false
//! max_page_bytes = 268435456
//! max_empty_pages = 20
//! [retry]
//! max_attempts = 6
//! base_delay = "2s"
//! max_delay = "5m"
//! retry_after_cap = "15m"
//! [headers]
//! "User-Agent" = "my-aggregator (admin@example.org)"
//! [namespaces]                      # prefixes usable in resource_id
//! dc = "http://purl.org/dc/elements/1.1/"
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use sheaf_domain::{SchemaId, SourceId};
use toml::{Table, Value as Toml};
use url::Url;

use crate::parse::{Header, ParsedRecord};
use crate::resource::ResourcePath;
pub use crate::retry::RetryPolicy;

/// Namespace prefixes known to `resource_id` paths without a
/// `[namespaces]` table; a config's own table adds to and overrides these.
pub const DEFAULT_NAMESPACES: &[(&str, &str)] = &[
    ("dc", "http://purl.org/dc/elements/1.1/"),
    ("oai_dc", "http://www.openarchives.org/OAI/2.0/oai_dc/"),
    ("dcterms", "http://purl.org/dc/terms/"),
    ("datacite", "http://datacite.org/schema/kernel-4"),
    ("mods", "http://www.loc.gov/mods/v3"),
    ("marc", "http://www.loc.gov/MARC21/slim"),
    ("xlink", "http://www.w3.org/1999/xlink"),
    ("xsi", "http://www.w3.org/2001/XMLSchema-instance"),
];

/// One provider to harvest, as loaded from `harvest-configs/<id>.toml`.
#[derive(Clone, PartialEq)]
pub struct SourceConfig {
    /// The file stem.
    pub id: SourceId,
    /// The OAI-PMH base URL (may carry its own query, which is kept).
    pub base_url: Url,
    pub metadata_prefix: String,
    /// Sets to harvest one after another; empty = the whole repository.
    pub sets: Vec<String>,
    /// Cron string, 5 fields or 6 with seconds first; validated at load.
    pub schedule: Option<String>,
    /// The schema to validate against; `None` = chosen by metadata prefix.
    pub schema: Option<SchemaId>,
    /// How to find the resource(s) a record describes.
    pub resource_id: ResourceIdRule,
    /// Prefix → namespace URI for `resource_id` paths (defaults included).
    pub namespaces: Vec<(String, String)>,
    /// How a harvest's date range is cut into windows.
    pub window: Window,
    /// Minimum interval between two requests to this provider.
    pub pacing: Duration,
    /// Per-request timeout, connection to last body byte.
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// Extra request headers (User-Agent, Authorization, …). Values are
    /// redacted in `Debug` and [`SourceConfig::to_json`].
    pub headers: Vec<(String, String)>,
    pub enabled: bool,
    pub list_method: ListMethod,
    /// Largest response body accepted (after decompression).
    pub max_page_bytes: u64,
    /// Consecutive pages without records (but with a token) tolerated
    /// before a chain counts as stalled.
    pub max_empty_pages: u32,
}

/// How to find the resource(s) (`IS_METADATA_FOR`) a record describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceIdRule {
    /// The record's OAI identifier itself.
    OaiIdentifier,
    /// A path over the metadata document, in the subset
    /// [`crate::resource`] documents: `//dc:identifier[url]`,
    /// `/oai_dc:dc/dc:identifier[starts-with(., 'https://doi.org/')]`,
    /// `//datacite:identifier[@identifierType='DOI']`, `//mods:url/@href`.
    /// Every non-empty match is a resource, in document order.
    XPath(String),
}

/// How a harvest's date range is cut into windows (each one its own
/// resumption chain, so an expired token costs at most one window).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Window {
    /// One chain for the whole range.
    #[default]
    None,
    Month,
    Day,
    Hour,
}

impl Window {
    /// The spelling used in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Window::None => "none",
            Window::Month => "month",
            Window::Day => "day",
            Window::Hour => "hour",
        }
    }
}

/// Which verbs fetch the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListMethod {
    /// `ListRecords`, the normal way.
    #[default]
    ListRecords,
    /// `ListIdentifiers`, then one `GetRecord` per identifier: for providers
    /// whose ListRecords is broken or poisoned by one record.
    IdentifiersThenGetRecord,
}

impl ListMethod {
    /// The spelling used in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            ListMethod::ListRecords => "list-records",
            ListMethod::IdentifiersThenGetRecord => "identifiers-then-get-record",
        }
    }
}

/// One problem in one config file: which file, which field, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    /// The offending key (dotted for nested tables: `retry.max_attempts`);
    /// `None` for whole-file problems (unreadable, not TOML).
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(
                f,
                "{}: field `{}`: {}",
                self.file.display(),
                field,
                self.message
            ),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, _)| (k.as_str(), "<redacted>"))
            .collect();
        f.debug_struct("SourceConfig")
            .field("id", &self.id)
            .field("base_url", &self.base_url.as_str())
            .field("metadata_prefix", &self.metadata_prefix)
            .field("sets", &self.sets)
            .field("schedule", &self.schedule)
            .field("schema", &self.schema)
            .field("resource_id", &self.resource_id)
            .field("window", &self.window)
            .field("pacing", &self.pacing)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("headers", &headers)
            .field("enabled", &self.enabled)
            .field("list_method", &self.list_method)
            .finish_non_exhaustive()
    }
}

impl SourceConfig {
    /// A config with every optional field at its default.
    pub fn new(id: SourceId, base_url: Url, metadata_prefix: impl Into<String>) -> Self {
        Self {
            id,
            base_url,
            metadata_prefix: metadata_prefix.into(),
            sets: Vec::new(),
            schedule: None,
            schema: None,
            resource_id: ResourceIdRule::OaiIdentifier,
            namespaces: DEFAULT_NAMESPACES
                .iter()
                .map(|(p, u)| ((*p).to_owned(), (*u).to_owned()))
                .collect(),
            window: Window::None,
            pacing: Duration::ZERO,
            timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
            headers: Vec::new(),
            enabled: true,
            list_method: ListMethod::ListRecords,
            max_page_bytes: 256 * 1024 * 1024,
            max_empty_pages: 20,
        }
    }

    /// The parsed schedule, if any (validated at load, so `None` only when
    /// absent or when the config was built in code with a bad string).
    pub fn cron(&self) -> Option<croner::Cron> {
        self.schedule.as_deref().and_then(|s| parse_cron(s).ok())
    }

    /// The resources a record describes, by [`SourceConfig::resource_id`].
    /// `Err` explains why none could be found (no match, bad metadata).
    pub fn resource_ids(&self, record: &ParsedRecord) -> Result<Vec<String>, String> {
        self.resource_ids_of(
            &record.header,
            record.metadata.as_ref().ok().and_then(|m| m.as_deref()),
        )
    }

    /// As [`SourceConfig::resource_ids`], from a header and the standalone
    /// metadata document.
    pub fn resource_ids_of(
        &self,
        header: &Header,
        metadata: Option<&[u8]>,
    ) -> Result<Vec<String>, String> {
        match &self.resource_id {
            ResourceIdRule::OaiIdentifier => Ok(vec![header.identifier.clone()]),
            ResourceIdRule::XPath(expr) => {
                let path = ResourcePath::compile(expr, &self.namespaces)?;
                let doc = metadata.ok_or("record has no metadata to find a resource id in")?;
                let found = path.evaluate(doc)?;
                if found.is_empty() {
                    Err(format!("resource_id path {expr} matched nothing"))
                } else {
                    Ok(found)
                }
            }
        }
    }

    /// The configuration as JSON for the store's `Source.config` (header
    /// values redacted).
    pub fn to_json(&self) -> Value {
        let resource_id = match &self.resource_id {
            ResourceIdRule::OaiIdentifier => json!("oai-identifier"),
            ResourceIdRule::XPath(x) => json!({ "xpath": x }),
        };
        let headers: serde_json::Map<String, Value> = self
            .headers
            .iter()
            .map(|(k, _)| (k.clone(), json!("<redacted>")))
            .collect();
        json!({
            "id": self.id.as_str(),
            "base_url": self.base_url.as_str(),
            "metadata_prefix": self.metadata_prefix,
            "sets": self.sets,
            "schedule": self.schedule,
            "schema": self.schema.as_ref().map(|s| s.as_str()),
            "resource_id": resource_id,
            "window": self.window.as_str(),
            "pacing_ms": self.pacing.as_millis() as u64,
            "timeout_ms": self.timeout.as_millis() as u64,
            "retry": {
                "max_attempts": self.retry.max_attempts,
                "base_delay_ms": self.retry.base_delay.as_millis() as u64,
                "max_delay_ms": self.retry.max_delay.as_millis() as u64,
                "retry_after_cap_ms": self.retry.retry_after_cap.as_millis() as u64,
            },
            "headers": headers,
            "enabled": self.enabled,
            "list_method": self.list_method.as_str(),
            "max_page_bytes": self.max_page_bytes,
            "max_empty_pages": self.max_empty_pages,
        })
    }
}

/// Loads every `*.toml` file in `dir` (sorted by name). Valid sources come
/// back in the first list; every problem of every invalid file in the
/// second, so a daemon can start with the valid ones and report the rest.
pub fn load_dir(dir: &Path) -> (Vec<SourceConfig>, Vec<ConfigError>) {
    let mut files = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
            .collect::<Vec<_>>(),
        Err(e) => {
            return (
                Vec::new(),
                vec![ConfigError {
                    file: dir.to_path_buf(),
                    field: None,
                    message: format!("cannot read directory: {e}"),
                }],
            );
        }
    };
    files.sort();
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        match load_file_all(&file) {
            Ok(s) => sources.push(s),
            Err(mut e) => errors.append(&mut e),
        }
    }
    (sources, errors)
}

/// Loads one config file; the first problem found if it is invalid (use
/// [`load_file_all`] for all of them).
pub fn load_file(path: &Path) -> Result<SourceConfig, ConfigError> {
    load_file_all(path).map_err(|mut errs| errs.swap_remove(0))
}

/// `sheaf config check`: how many files in `dir` are valid, and every
/// problem in the others.
pub fn check_dir(dir: &Path) -> (usize, Vec<ConfigError>) {
    let (ok, errors) = load_dir(dir);
    (ok.len(), errors)
}

/// Loads one config file, reporting every problem found (never empty on
/// `Err`).
pub fn load_file_all(path: &Path) -> Result<SourceConfig, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            file: path.to_path_buf(),
            field: None,
            message: format!("cannot read file: {e}"),
        }]
    })?;
    parse_config(path, &text)
}

/// Parses a config's text; `path` gives the id (its stem) and names the
/// file in errors.
pub fn parse_config(path: &Path, text: &str) -> Result<SourceConfig, Vec<ConfigError>> {
    let mut cx = Cx {
        file: path.to_path_buf(),
        errors: Vec::new(),
    };
    let table: Table = match text.parse::<Table>() {
        Ok(t) => t,
        Err(e) => {
            cx.whole(format!("not valid TOML: {}", e.to_string().trim()));
            return Err(cx.errors);
        }
    };

    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let id = match SourceId::parse(stem) {
        Ok(id) => Some(id),
        Err(e) => {
            cx.err("id (file name)", e.to_string());
            None
        }
    };

    for key in table.keys() {
        if !TOP_KEYS.contains(&key.as_str()) {
            cx.err(
                key,
                format!("unknown field; expected one of {}", TOP_KEYS.join(", ")),
            );
        }
    }

    let base_url = match cx.string(&table, "base_url", true) {
        Some(s) => match Url::parse(&s) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {
                if u.fragment().is_some() {
                    cx.err("base_url", "must not have a #fragment");
                    None
                } else {
                    Some(u)
                }
            }
            Ok(u) => {
                cx.err(
                    "base_url",
                    format!("scheme {:?} is not http or https", u.scheme()),
                );
                None
            }
            Err(e) => {
                cx.err("base_url", format!("not a URL: {e}"));
                None
            }
        },
        None => None,
    };

    let metadata_prefix = cx.string(&table, "metadata_prefix", true);
    if let Some(p) = &metadata_prefix
        && (p.is_empty() || !p.chars().all(is_prefix_char))
    {
        cx.err(
            "metadata_prefix",
            "must be non-empty and use only letters, digits and - _ . ! ~ * ' ( )",
        );
    }

    let sets = cx.string_list(&table, "sets").unwrap_or_default();
    for (i, s) in sets.iter().enumerate() {
        if s.trim().is_empty() || s.trim() != s {
            cx.err(
                &format!("sets[{i}]"),
                "must be non-empty, without surrounding whitespace",
            );
        }
    }

    let schedule = cx.string(&table, "schedule", false);
    if let Some(s) = &schedule
        && let Err(e) = parse_cron(s)
    {
        cx.err("schedule", e);
    }

    let schema = cx
        .string(&table, "schema", false)
        .and_then(|s| match SchemaId::parse(s) {
            Ok(id) => Some(id),
            Err(e) => {
                cx.err("schema", e.to_string());
                None
            }
        });

    let mut namespaces: Vec<(String, String)> = DEFAULT_NAMESPACES
        .iter()
        .map(|(p, u)| ((*p).to_owned(), (*u).to_owned()))
        .collect();
    if let Some(v) = table.get("namespaces") {
        match v.as_table() {
            Some(t) => {
                for (prefix, uri) in t {
                    let field = format!("namespaces.{prefix}");
                    match uri.as_str() {
                        Some(u) if !u.is_empty() && is_ncname(prefix) => {
                            namespaces.retain(|(p, _)| p != prefix);
                            namespaces.push((prefix.clone(), u.to_owned()));
                        }
                        Some(_) => {
                            cx.err(&field, "prefix must be an XML name and the URI non-empty")
                        }
                        None => cx.err(&field, "must be a string (the namespace URI)"),
                    }
                }
            }
            None => cx.err("namespaces", "must be a table of prefix = \"uri\""),
        }
    }

    let resource_id = match table.get("resource_id") {
        None => ResourceIdRule::OaiIdentifier,
        Some(Toml::String(s)) if s == "oai-identifier" => ResourceIdRule::OaiIdentifier,
        Some(Toml::Table(t)) if t.len() == 1 && t.get("xpath").is_some_and(Toml::is_str) => {
            let expr = t.get("xpath").and_then(Toml::as_str).unwrap_or_default();
            if let Err(e) = ResourcePath::compile(expr, &namespaces) {
                cx.err("resource_id.xpath", e);
            }
            ResourceIdRule::XPath(expr.to_owned())
        }
        Some(_) => {
            cx.err(
                "resource_id",
                "must be \"oai-identifier\" or { xpath = \"//dc:identifier[url]\" }",
            );
            ResourceIdRule::OaiIdentifier
        }
    };

    let window = match cx.string(&table, "window", false).as_deref() {
        None | Some("none") => Window::None,
        Some("month") => Window::Month,
        Some("day") => Window::Day,
        Some("hour") => Window::Hour,
        Some(other) => {
            cx.err(
                "window",
                format!("{other:?} is not one of none, month, day, hour"),
            );
            Window::None
        }
    };

    let list_method = match cx.string(&table, "list_method", false).as_deref() {
        None | Some("list-records") => ListMethod::ListRecords,
        Some("identifiers-then-get-record") => ListMethod::IdentifiersThenGetRecord,
        Some(other) => {
            cx.err(
                "list_method",
                format!("{other:?} is not one of list-records, identifiers-then-get-record"),
            );
            ListMethod::ListRecords
        }
    };

    let defaults = RetryPolicy::default();
    let pacing = cx
        .duration(&table, "pacing", "pacing")
        .unwrap_or(Duration::ZERO);
    let timeout = cx
        .duration(&table, "timeout", "timeout")
        .unwrap_or(Duration::from_secs(120));
    if timeout.is_zero() {
        cx.err("timeout", "must be greater than zero");
    }

    let mut retry = defaults;
    if let Some(v) = table.get("retry") {
        match v.as_table() {
            Some(t) => {
                for key in t.keys() {
                    if !RETRY_KEYS.contains(&key.as_str()) {
                        cx.err(
                            &format!("retry.{key}"),
                            format!("unknown field; expected one of {}", RETRY_KEYS.join(", ")),
                        );
                    }
                }
                if let Some(n) = cx.integer(t, "max_attempts", "retry.max_attempts") {
                    if (1..=100).contains(&n) {
                        retry.max_attempts = n as u32;
                    } else {
                        cx.err("retry.max_attempts", "must be between 1 and 100");
                    }
                }
                if let Some(d) = cx.duration(t, "base_delay", "retry.base_delay") {
                    retry.base_delay = d;
                }
                if let Some(d) = cx.duration(t, "max_delay", "retry.max_delay") {
                    retry.max_delay = d;
                }
                if let Some(d) = cx.duration(t, "retry_after_cap", "retry.retry_after_cap") {
                    retry.retry_after_cap = d;
                }
                if retry.max_delay < retry.base_delay {
                    cx.err(
                        "retry.max_delay",
                        "must not be shorter than retry.base_delay",
                    );
                }
            }
            None => cx.err("retry", "must be a table"),
        }
    }

    let mut headers = Vec::new();
    if let Some(v) = table.get("headers") {
        match v.as_table() {
            Some(t) => {
                for (name, value) in t {
                    let field = format!("headers.{name}");
                    match value.as_str() {
                        Some(val) => {
                            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                                cx.err(&field, "not a valid HTTP header name");
                            } else if reqwest::header::HeaderValue::from_str(val).is_err() {
                                cx.err(&field, "not a valid HTTP header value");
                            } else {
                                headers.push((name.clone(), val.to_owned()));
                            }
                        }
                        None => cx.err(&field, "must be a string"),
                    }
                }
            }
            None => cx.err("headers", "must be a table of name = \"value\""),
        }
    }

    let enabled = cx.boolean(&table, "enabled").unwrap_or(true);
    let max_page_bytes = match cx.integer(&table, "max_page_bytes", "max_page_bytes") {
        Some(n) if n >= 1024 => n as u64,
        Some(_) => {
            cx.err("max_page_bytes", "must be at least 1024");
            256 * 1024 * 1024
        }
        None => 256 * 1024 * 1024,
    };
    let max_empty_pages = match cx.integer(&table, "max_empty_pages", "max_empty_pages") {
        Some(n) if (0..=100_000).contains(&n) => n as u32,
        Some(_) => {
            cx.err("max_empty_pages", "must be between 0 and 100000");
            20
        }
        None => 20,
    };

    match (id, base_url, metadata_prefix) {
        (Some(id), Some(base_url), Some(metadata_prefix)) if cx.errors.is_empty() => {
            Ok(SourceConfig {
                id,
                base_url,
                metadata_prefix,
                sets,
                schedule,
                schema,
                resource_id,
                namespaces,
                window,
                pacing,
                timeout,
                retry,
                headers,
                enabled,
                list_method,
                max_page_bytes,
                max_empty_pages,
            })
        }
        _ => Err(cx.errors),
    }
}

const TOP_KEYS: &[&str] = &[
    "base_url",
    "metadata_prefix",
    "sets",
    "schedule",
    "schema",
    "resource_id",
    "namespaces",
    "window",
    "pacing",
    "timeout",
    "retry",
    "headers",
    "enabled",
    "list_method",
    "max_page_bytes",
    "max_empty_pages",
];

const RETRY_KEYS: &[&str] = &["max_attempts", "base_delay", "max_delay", "retry_after_cap"];

/// Validates a cron string: 5 fields (minute first) or 6 (seconds first),
/// or an `@daily`-style nickname.
pub fn parse_cron(s: &str) -> Result<croner::Cron, String> {
    let fields = s.split_whitespace().count();
    let nickname = s.trim_start().starts_with('@');
    if !nickname && fields != 5 && fields != 6 {
        return Err(format!(
            "cron {s:?} has {fields} fields; expected 5 (minute hour day month weekday) or 6 (seconds first)"
        ));
    }
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(s)
        .map_err(|e| format!("cron {s:?} is invalid: {e}"))
}

/// Parses a duration: `"500ms"`, `"3s"`, `"2m"`, `"1h"`, `"1d"`, sums such
/// as `"1h30m"`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let bad = || format!("{s:?} is not a duration like \"500ms\", \"3s\", \"2m\", \"1h\", \"1d\"");
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            _ => return Err(bad()),
        };
        total = total.saturating_add(part);
    }
    Ok(total)
}

fn is_prefix_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.!~*'()".contains(c)
}

pub(crate) fn is_ncname(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || "-_.".contains(c))
}

/// Collects errors for one file.
struct Cx {
    file: PathBuf,
    errors: Vec<ConfigError>,
}

impl Cx {
    fn err(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            field: Some(field.to_owned()),
            message: message.into(),
        });
    }

    fn whole(&mut self, message: String) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            field: None,
            message,
        });
    }

    fn string(&mut self, t: &Table, key: &str, required: bool) -> Option<String> {
        match t.get(key) {
            Some(Toml::String(s)) => Some(s.clone()),
            Some(other) => {
                self.err(key, format!("must be a string, not {}", other.type_str()));
                None
            }
            None => {
                if required {
                    self.err(key, "is required");
                }
                None
            }
        }
    }

    fn string_list(&mut self, t: &Table, key: &str) -> Option<Vec<String>> {
        match t.get(key)? {
            Toml::Array(items) => {
                let mut out = Vec::new();
                for (i, v) in items.iter().enumerate() {
                    match v.as_str() {
                        Some(s) => out.push(s.to_owned()),
                        None => self.err(&format!("{key}[{i}]"), "must be a string"),
                    }
                }
                Some(out)
            }
            other => {
                self.err(
                    key,
                    format!("must be an array of strings, not {}", other.type_str()),
                );
                None
            }
        }
    }

    fn boolean(&mut self, t: &Table, key: &str) -> Option<bool> {
        match t.get(key)? {
            Toml::Boolean(b) => Some(*b),
            other => {
                self.err(
                    key,
                    format!("must be true or false, not {}", other.type_str()),
                );
                None
            }
        }
    }

    fn integer(&mut self, t: &Table, key: &str, field: &str) -> Option<i64> {
        match t.get(key)? {
            Toml::Integer(n) => Some(*n),
            other => {
                self.err(
                    field,
                    format!("must be an integer, not {}", other.type_str()),
                );
                None
            }
        }
    }

    fn duration(&mut self, t: &Table, key: &str, field: &str) -> Option<Duration> {
        match t.get(key)? {
            Toml::String(s) => match parse_duration(s) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.err(field, e);
                    None
                }
            },
            Toml::Integer(n) if *n >= 0 => Some(Duration::from_secs(*n as u64)),
            other => {
                self.err(
                    field,
                    format!(
                        "must be a duration string like \"3s\" or a number of seconds, not {}",
                        other.type_str()
                    ),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, text: &str) -> Result<SourceConfig, Vec<ConfigError>> {
        parse_config(Path::new(name), text)
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(
            "x/arxiv.toml",
            "base_url = \"https://example.org/oai\"\nmetadata_prefix = \"oai_dc\"\n",
        )
        .expect("valid");
        assert_eq!(c.id.as_str(), "arxiv");
        assert_eq!(c.resource_id, ResourceIdRule::OaiIdentifier);
        assert_eq!(c.window, Window::None);
        assert_eq!(c.list_method, ListMethod::ListRecords);
        assert!(c.enabled);
        assert_eq!(c.retry, RetryPolicy::default());
    }

    #[test]
    fn full_config_parses() {
        let c = parse(
            "full.toml",
            r#"
base_url = "https://example.org/oai?key=1"
metadata_prefix = "oai_dc"
sets = ["a", "b:c"]
schedule = "0 30 2 * * *"
schema = "oai_dc"
resource_id = { xpath = "//dc:identifier[url]" }
window = "day"
pacing = "1s500ms"
timeout = 90
list_method = "identifiers-then-get-record"
enabled = false
[retry]
max_attempts = 3
base_delay = "500ms"
max_delay = "1m"
retry_after_cap = "1h"
[headers]
"User-Agent" = "test"
Authorization = "Bearer secret"
[namespaces]
ex = "http://example.org/ns"
"#,
        )
        .expect("valid");
        assert_eq!(c.sets, ["a", "b:c"]);
        assert_eq!(c.pacing, Duration::from_millis(1500));
        assert_eq!(c.timeout, Duration::from_secs(90));
        assert_eq!(c.window, Window::Day);
        assert_eq!(c.list_method, ListMethod::IdentifiersThenGetRecord);
        assert!(!c.enabled);
        assert_eq!(c.retry.max_attempts, 3);
        assert_eq!(c.retry.retry_after_cap, Duration::from_secs(3600));
        assert!(c.cron().is_some());
        assert!(c.namespaces.iter().any(|(p, _)| p == "ex"));
        let debug = format!("{c:?}");
        assert!(!debug.contains("secret"), "{debug}");
        assert!(!c.to_json().to_string().contains("secret"));
    }

    #[test]
    fn every_error_names_file_and_field() {
        let errs = parse(
            "dir/bad.toml",
            r#"
base_url = "ftp://example.org"
schedule = "61 * * * *"
window = "week"
pacing = "3 parsecs"
colour = "blue"
resource_id = { xpath = "//zz:identifier" }
[retry]
max_attempts = 0
"#,
        )
        .expect_err("invalid");
        let fields: Vec<_> = errs.iter().filter_map(|e| e.field.as_deref()).collect();
        for f in [
            "base_url",
            "metadata_prefix",
            "schedule",
            "window",
            "pacing",
            "colour",
            "resource_id.xpath",
            "retry.max_attempts",
        ] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
        let shown = errs[0].to_string();
        assert!(shown.starts_with("dir/bad.toml: field `"), "{shown}");
    }

    #[test]
    fn cron_accepts_five_and_six_fields_only() {
        assert!(parse_cron("0 3 * * *").is_ok());
        assert!(parse_cron("30 0 3 * * MON").is_ok());
        assert!(parse_cron("@daily").is_ok());
        assert!(parse_cron("0 3 * *").is_err());
        assert!(parse_cron("0 0 3 * * * 2030").is_err());
        assert!(parse_cron("0 25 * * *").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("42"), Ok(Duration::from_secs(42)));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("3 s").is_err());
        assert!(parse_duration("3w").is_err());
    }

    #[test]
    fn not_toml_is_a_whole_file_error() {
        let errs = parse("broken.toml", "base_url = ").expect_err("invalid");
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, None);
        assert!(
            errs[0]
                .to_string()
                .starts_with("broken.toml: not valid TOML")
        );
    }

    #[test]
    fn load_dir_separates_valid_and_invalid() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("good.toml"),
            "base_url = \"https://example.org/oai\"\nmetadata_prefix = \"oai_dc\"\n",
        )
        .expect("write");
        std::fs::write(dir.path().join("bad.toml"), "metadata_prefix = 3\n").expect("write");
        std::fs::write(dir.path().join("notes.txt"), "ignored").expect("write");
        let (ok, errs) = load_dir(dir.path());
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].id.as_str(), "good");
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs.iter().all(|e| e.file.ends_with("bad.toml")));
        assert_eq!(check_dir(dir.path()).0, 1);
        assert!(load_file(&dir.path().join("bad.toml")).is_err());
    }
}
