//! The OAI-PMH protocol client for one source: builds requests (verb
//! first, every value percent-encoded, resumption tokens sent alone),
//! paces them, retries what is worth retrying and parses the answers.
//!
//! Depends on [`crate::config`] (what to ask and how patiently),
//! [`crate::parse`] (what the answers mean) and [`crate::retry`] (how long
//! to wait). It never touches the store: the run loop decides what a
//! page, an error or an expired token means for the harvest.
//!
//! What is retried, with capped exponential backoff and jitter, or after
//! the provider's `Retry-After` (seconds or HTTP-date, capped): transport
//! errors (refused, reset, cut bodies), timeouts, HTTP 408, 429 and 5xx,
//! bodies that are empty, not OAI-PMH or malformed, and OAI errors with
//! codes outside the protocol (`InternalException`, an empty code). Not
//! retried: protocol errors (`badArgument`, `cannotDisseminateFormat`, …),
//! other 4xx, oversized bodies — and `badResumptionToken`, surfaced as
//! [`ClientError::BadResumptionToken`] because retrying a single-use
//! token is the run loop's decision (once, then restart the window).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER, USER_AGENT};
use sheaf_domain::SourceId;
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

use crate::config::SourceConfig;
use crate::parse::{
    Header, Identify, OaiErrorCode, Page, PageError, ParsedRecord, parse_identify, parse_page,
};
use crate::retry::{RetryPolicy, Sleeper, TokioSleeper, parse_retry_after};

/// Everything but RFC 3986 unreserved characters is percent-encoded, so
/// tokens with `+`, `/`, `|`, spaces or `=` reach the provider intact.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

const DEFAULT_USER_AGENT: &str =
    concat!("Sheaf/", env!("CARGO_PKG_VERSION"), " (OAI-PMH harvester)");

/// The list verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListVerb {
    ListRecords,
    ListIdentifiers,
}

impl ListVerb {
    /// The protocol spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ListVerb::ListRecords => "ListRecords",
            ListVerb::ListIdentifiers => "ListIdentifiers",
        }
    }
}

/// One list request: the first of a chain, or a resumption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListRequest {
    /// The first request of a chain. `from`/`until` must already be at the
    /// provider's granularity ([`Identify::format_datestamp`]).
    Start {
        verb: ListVerb,
        prefix: String,
        set: Option<String>,
        from: Option<String>,
        until: Option<String>,
    },
    /// A follow-up: only the verb and the token are sent, as the protocol
    /// requires (resumptionToken is an exclusive argument).
    Resume { verb: ListVerb, token: String },
}

impl ListRequest {
    /// The query arguments, verb first.
    pub fn params(&self) -> Vec<(&'static str, String)> {
        match self {
            ListRequest::Start {
                verb,
                prefix,
                set,
                from,
                until,
            } => {
                let mut p = vec![
                    ("verb", verb.as_str().to_owned()),
                    ("metadataPrefix", prefix.clone()),
                ];
                if let Some(f) = from {
                    p.push(("from", f.clone()));
                }
                if let Some(u) = until {
                    p.push(("until", u.clone()));
                }
                if let Some(s) = set {
                    p.push(("set", s.clone()));
                }
                p
            }
            ListRequest::Resume { verb, token } => vec![
                ("verb", verb.as_str().to_owned()),
                ("resumptionToken", token.clone()),
            ],
        }
    }

    /// The verb asked for.
    pub fn verb(&self) -> ListVerb {
        match self {
            ListRequest::Start { verb, .. } | ListRequest::Resume { verb, .. } => *verb,
        }
    }
}

/// Why a request failed, after any retries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The source's configuration cannot make a client (bad header, …).
    #[error("cannot build the HTTP client: {0}")]
    Config(String),
    /// The provider rejected the resumption token (expired, single-use,
    /// unknown). Not retried here: retry once, then restart the window.
    #[error("badResumptionToken: {message}")]
    BadResumptionToken { message: String },
    /// A protocol error answer (`badArgument`, `cannotDisseminateFormat`,
    /// `idDoesNotExist`, …).
    #[error("OAI-PMH error {code}: {message}")]
    Oai { code: OaiErrorCode, message: String },
    /// An HTTP status that is not a usable OAI-PMH answer.
    #[error("HTTP {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Http {
        status: u16,
        /// The provider's `Retry-After`, uncapped.
        retry_after: Option<Duration>,
        /// The start of the body, for diagnosis.
        body: String,
    },
    #[error("no complete response within {0:?}")]
    Timeout(Duration),
    /// Connection refused or reset, body cut short, TLS, …
    #[error("transport error: {0}")]
    Transport(String),
    #[error("response body larger than the configured {limit} bytes")]
    TooLarge { limit: u64 },
    /// The body is not a usable OAI-PMH response.
    #[error(transparent)]
    Page(PageError),
    /// Every attempt failed with retryable errors; `last` is the final one.
    #[error("gave up after {attempts} attempts: {last}")]
    Exhausted {
        attempts: u32,
        last: Box<ClientError>,
        /// The provider's last `Retry-After`, for the scheduler.
        retry_after: Option<Duration>,
    },
}

impl ClientError {
    /// Whether another attempt might succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Http { status, .. } => {
                *status == 408 || *status == 429 || (500..600).contains(status)
            }
            ClientError::Timeout(_) | ClientError::Transport(_) | ClientError::Page(_) => true,
            ClientError::Oai { code, .. } => matches!(code, OaiErrorCode::Other(_)),
            ClientError::Config(_)
            | ClientError::BadResumptionToken { .. }
            | ClientError::TooLarge { .. }
            | ClientError::Exhausted { .. } => false,
        }
    }

    /// Whether the provider rejected a resumption token.
    pub fn is_bad_resumption_token(&self) -> bool {
        matches!(self, ClientError::BadResumptionToken { .. })
    }

    /// The provider's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Http { retry_after, .. } | ClientError::Exhausted { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }
}

/// Request counters for one client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// HTTP requests sent (attempts, retries included).
    pub requests: u64,
    /// Attempts that failed and were retried.
    pub retries: u64,
    /// Response body bytes received (after decompression).
    pub bytes: u64,
}

/// An OAI-PMH client for one source.
#[derive(Debug)]
pub struct Client {
    source: SourceId,
    http: reqwest::Client,
    base_url: Url,
    policy: RetryPolicy,
    pacing: Duration,
    timeout: Duration,
    max_page_bytes: u64,
    sleeper: Arc<dyn Sleeper>,
    last_request: Mutex<Option<Instant>>,
    requests: AtomicU64,
    retries: AtomicU64,
    bytes: AtomicU64,
}

impl Client {
    /// A client for `cfg`'s provider, with its timeouts, pacing, retry
    /// policy and headers; gzip and deflate are accepted.
    pub fn new(cfg: &SourceConfig) -> Result<Self, ClientError> {
        let mut headers = HeaderMap::new();
        headers.insert(USER_AGENT, HeaderValue::from_static(DEFAULT_USER_AGENT));
        for (name, value) in &cfg.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| ClientError::Config(format!("header {name:?}: {e}")))?;
            let mut value = HeaderValue::from_str(value)
                .map_err(|e| ClientError::Config(format!("header {name}: {e}")))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .gzip(true)
            .deflate(true)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(30)))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ClientError::Config(error_chain(&e)))?;
        Ok(Self {
            source: cfg.id.clone(),
            http,
            base_url: cfg.base_url.clone(),
            policy: cfg.retry,
            pacing: cfg.pacing,
            timeout: cfg.timeout,
            max_page_bytes: cfg.max_page_bytes,
            sleeper: Arc::new(TokioSleeper),
            last_request: Mutex::new(None),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        })
    }

    /// Replaces how the client waits (backoff, `Retry-After`, pacing);
    /// tests pass a [`crate::retry::RecordingSleeper`].
    pub fn with_sleeper(mut self, sleeper: Arc<dyn Sleeper>) -> Self {
        self.sleeper = sleeper;
        self
    }

    /// Counters so far.
    pub fn stats(&self) -> ClientStats {
        ClientStats {
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }

    /// `verb=Identify`.
    pub async fn identify(&self) -> Result<Identify, ClientError> {
        self.call(&[("verb", "Identify".to_owned())], parse_identify)
            .await
    }

    /// One page of ListRecords or ListIdentifiers. `noRecordsMatch` is an
    /// empty page with [`Page::no_records_match`] set.
    pub async fn list(&self, req: &ListRequest) -> Result<Page, ClientError> {
        self.call(&req.params(), parse_page).await
    }

    /// `verb=GetRecord`; `None` when the provider answers `idDoesNotExist`.
    pub async fn get_record(
        &self,
        identifier: &str,
        prefix: &str,
    ) -> Result<Option<ParsedRecord>, ClientError> {
        let params = [
            ("verb", "GetRecord".to_owned()),
            ("identifier", identifier.to_owned()),
            ("metadataPrefix", prefix.to_owned()),
        ];
        match self.call(&params, parse_page).await {
            Ok(page) => match page.records.into_iter().next() {
                Some(r) => Ok(Some(r)),
                None => Err(ClientError::Page(PageError::NotOai(
                    "the GetRecord response holds no record".into(),
                ))),
            },
            Err(ClientError::Oai {
                code: OaiErrorCode::IdDoesNotExist,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The ListIdentifiers + GetRecord fallback: turns a page's headers
    /// into records, one GetRecord each (deleted headers need none). A
    /// record the provider cannot deliver (`idDoesNotExist` although just
    /// listed, a per-record protocol error) comes back as a rejected
    /// record, never silently dropped; transport failures fail the page.
    pub async fn expand_identifiers(
        &self,
        headers: &[Header],
        prefix: &str,
    ) -> Result<Vec<ParsedRecord>, ClientError> {
        let mut out = Vec::with_capacity(headers.len());
        for h in headers {
            let rejected = |why: String| ParsedRecord {
                header: h.clone(),
                metadata: Err(why),
                metadata_namespace: None,
                raw: Vec::new(),
                warnings: Vec::new(),
            };
            if h.identifier.is_empty() {
                out.push(rejected("header has no identifier".into()));
                continue;
            }
            if h.deleted {
                out.push(ParsedRecord {
                    header: h.clone(),
                    metadata: Ok(None),
                    metadata_namespace: None,
                    raw: Vec::new(),
                    warnings: Vec::new(),
                });
                continue;
            }
            match self.get_record(&h.identifier, prefix).await {
                Ok(Some(r)) => out.push(r),
                Ok(None) => out.push(rejected(
                    "GetRecord answered idDoesNotExist for a listed identifier".into(),
                )),
                Err(e @ ClientError::Oai { .. }) => {
                    out.push(rejected(format!("GetRecord failed: {e}")))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The request URL for `params`: ours first (verb leading), then any
    /// query the base URL already carries.
    pub fn request_url(&self, params: &[(&str, String)]) -> Url {
        let mut query = String::new();
        for (k, v) in params {
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str(k);
            query.push('=');
            query.extend(utf8_percent_encode(v, QUERY_VALUE));
        }
        if let Some(existing) = self.base_url.query().filter(|q| !q.is_empty()) {
            query.push('&');
            query.push_str(existing);
        }
        let mut url = self.base_url.clone();
        url.set_query(Some(&query));
        url
    }

    async fn call<T: Send + 'static>(
        &self,
        params: &[(&str, String)],
        parse: fn(&[u8]) -> Result<T, PageError>,
    ) -> Result<T, ClientError> {
        let url = self.request_url(params);
        let verb = params.first().map(|(_, v)| v.as_str()).unwrap_or("");
        let max = self.policy.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.pace().await;
            match self.attempt(&url, parse).await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && attempt < max => {
                    let wait = self.policy.delay(attempt, e.retry_after());
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        source = %self.source, verb, attempt, max,
                        wait_ms = wait.as_millis() as u64, error = %e,
                        "request failed; retrying"
                    );
                    self.sleeper.sleep(wait).await;
                }
                Err(e) if e.is_retryable() => {
                    tracing::warn!(source = %self.source, verb, attempt, error = %e, "giving up");
                    return Err(ClientError::Exhausted {
                        attempts: attempt,
                        retry_after: e.retry_after(),
                        last: Box::new(e),
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits until `pacing` has passed since the previous request started.
    async fn pace(&self) {
        let mut last = self.last_request.lock().await;
        if let Some(prev) = *last {
            let due = prev + self.pacing;
            let now = Instant::now();
            if due > now {
                self.sleeper.sleep(due - now).await;
            }
        }
        *last = Some(Instant::now());
    }

    async fn attempt<T: Send + 'static>(
        &self,
        url: &Url,
        parse: fn(&[u8]) -> Result<T, PageError>,
    ) -> Result<T, ClientError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(source = %self.source, query = url.query().unwrap_or(""), "request");
        let (status, retry_after, body) = self.fetch(url).await?;
        self.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
        // 4xx bodies are read too: some providers send OAI errors with 422.
        let readable = status.is_success()
            || (status.is_client_error()
                && status != StatusCode::REQUEST_TIMEOUT
                && status != StatusCode::TOO_MANY_REQUESTS);
        if !readable {
            return Err(ClientError::Http {
                status: status.as_u16(),
                retry_after,
                body: body_snippet(&body),
            });
        }
        let parsed = tokio::task::spawn_blocking(move || (parse(&body), body))
            .await
            .map_err(|e| {
                ClientError::Page(PageError::Malformed {
                    position: 0,
                    message: format!("parser task failed: {e}"),
                })
            })?;
        match parsed {
            (Ok(v), _) => Ok(v),
            (
                Err(PageError::Oai {
                    code: OaiErrorCode::BadResumptionToken,
                    message,
                }),
                _,
            ) => Err(ClientError::BadResumptionToken { message }),
            (Err(PageError::Oai { code, message }), _) => Err(ClientError::Oai { code, message }),
            (Err(_), body) if status.is_client_error() => Err(ClientError::Http {
                status: status.as_u16(),
                retry_after,
                body: body_snippet(&body),
            }),
            (Err(e), _) => Err(ClientError::Page(e)),
        }
    }

    async fn fetch(
        &self,
        url: &Url,
    ) -> Result<(StatusCode, Option<Duration>, Vec<u8>), ClientError> {
        let map = |e: reqwest::Error| {
            if e.is_timeout() {
                ClientError::Timeout(self.timeout)
            } else {
                ClientError::Transport(error_chain(&e))
            }
        };
        let mut resp = self
            .http
            .get(url.clone())
            .timeout(self.timeout)
            .send()
            .await
            .map_err(map)?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        if resp
            .content_length()
            .is_some_and(|n| n > self.max_page_bytes)
        {
            return Err(ClientError::TooLarge {
                limit: self.max_page_bytes,
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(map)? {
            if (body.len() + chunk.len()) as u64 > self.max_page_bytes {
                return Err(ClientError::TooLarge {
                    limit: self.max_page_bytes,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, retry_after, body))
    }
}

fn body_snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(200)]);
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An error with its sources ("error sending request: connection reset").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let c_s = c.to_string();
        if !s.contains(&c_s) {
            s.push_str(": ");
            s.push_str(&c_s);
        }
        cur = c.source();
    }
    s
}
