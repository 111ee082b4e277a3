//! A scripted OAI-PMH provider for the harvest tests: axum on
//! 127.0.0.1:0, an in-memory repository of oai_dc records, stateless
//! resumption tokens, and faults the tests switch on (a gate that holds a
//! request, expired tokens, badResumptionToken, token loops, HTTP 500,
//! bodies cut mid-page). Every request's query is logged.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sheaf_domain::{Datestamp, Granularity, SourceId};
use sheaf_harvest::config::{ResourceIdRule, SourceConfig};
use sheaf_harvest::retry::RetryPolicy;
use tokio::sync::watch;
use url::Url;

/// What a record's metadata is.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// A valid oai_dc document; the revision changes its title.
    Valid { revision: u32 },
    /// Well-formed but not valid against oai_dc.
    Invalid,
    /// Not well-formed (an unclosed element).
    Malformed,
}

/// One upstream record.
#[derive(Debug, Clone, PartialEq)]
pub struct Rec {
    pub id: String,
    pub datestamp: String,
    pub sets: Vec<String>,
    pub deleted: bool,
    pub body: Body,
}

impl Rec {
    /// Record `n`: `oai:fake:n`, valid, in set `even` or `odd`.
    pub fn valid(n: usize, datestamp: &str) -> Rec {
        Rec {
            id: format!("oai:fake:{n}"),
            datestamp: datestamp.to_owned(),
            sets: vec![if n.is_multiple_of(2) { "even" } else { "odd" }.to_owned()],
            deleted: false,
            body: Body::Valid { revision: 1 },
        }
    }
}

/// `count` valid records with datestamps one hour apart from 2026-01-01.
pub fn records(count: usize) -> Vec<Rec> {
    (0..count)
        .map(|n| {
            let t = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
                .expect("time")
                .with_timezone(&chrono::Utc)
                + chrono::TimeDelta::hours(n as i64);
            Rec::valid(n, &Datestamp::new(t, Granularity::Seconds).to_string())
        })
        .collect()
}

/// Faults, switched on by tests.
#[derive(Debug, Default)]
pub struct Script {
    /// The list request with this number (1-based, counted over the
    /// provider's life) waits at the gate until released; set by
    /// [`Provider::hold`].
    hold_at: Option<usize>,
    /// The next this-many resumption requests get badResumptionToken.
    pub bad_tokens: usize,
    /// Every page carries the same token.
    pub loop_token: bool,
    /// List requests from this number on answer HTTP 500.
    pub fail_from: Option<usize>,
    /// The list request with this number gets only half its body.
    pub cut_at: Option<usize>,
}

struct St {
    repo: Mutex<Vec<Rec>>,
    page_size: usize,
    granularity: Mutex<Granularity>,
    earliest: Mutex<String>,
    response_date: Mutex<String>,
    /// Tokens carry this generation; older ones are expired.
    generation: AtomicUsize,
    list_requests: AtomicUsize,
    log: Mutex<Vec<String>>,
    script: Mutex<Script>,
    /// Number of requests currently held at the gate.
    held: watch::Sender<usize>,
    /// The current gate: `true` once released. Each hold gets its own, so
    /// a request held earlier is never caught by a later hold.
    gate: Mutex<watch::Sender<bool>>,
    /// List requests fully served (for kills "within" the next page).
    served: watch::Sender<usize>,
    url: String,
}

/// A running fake provider.
#[derive(Clone)]
pub struct Provider {
    pub url: String,
    st: Arc<St>,
}

impl Provider {
    /// Serves `repo` in pages of `page_size` at seconds granularity.
    pub async fn start(repo: Vec<Rec>, page_size: usize) -> Provider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/oai", listener.local_addr().expect("addr"));
        let st = Arc::new(St {
            repo: Mutex::new(repo),
            page_size,
            granularity: Mutex::new(Granularity::Seconds),
            earliest: Mutex::new("2020-01-01T00:00:00Z".into()),
            response_date: Mutex::new("2026-06-01T12:00:00Z".into()),
            generation: AtomicUsize::new(0),
            list_requests: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
            script: Mutex::new(Script::default()),
            held: watch::channel(0).0,
            gate: Mutex::new(watch::channel(false).0),
            served: watch::channel(0).0,
            url: url.clone(),
        });
        let app = Router::new()
            .route("/oai", get(handle))
            .with_state(Arc::clone(&st));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Provider { url, st }
    }

    /// A source config for this provider: oai_dc, resources from the
    /// first URL identifier, no retries (tests never wait).
    pub fn source(&self, id: &str) -> SourceConfig {
        let mut c = SourceConfig::new(
            SourceId::parse(id).expect("source id"),
            Url::parse(&self.url).expect("url"),
            "oai_dc",
        );
        c.resource_id = ResourceIdRule::XPath("//dc:identifier[url]".into());
        c.retry = RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        };
        c
    }

    pub fn set_repo(&self, repo: Vec<Rec>) {
        *self.st.repo.lock().expect("lock") = repo;
    }

    pub fn update_repo(&self, f: impl FnOnce(&mut Vec<Rec>)) {
        f(&mut self.st.repo.lock().expect("lock"));
    }

    pub fn set_response_date(&self, d: &str) {
        *self.st.response_date.lock().expect("lock") = d.to_owned();
    }

    pub fn set_granularity(&self, g: Granularity) {
        *self.st.granularity.lock().expect("lock") = g;
    }

    pub fn set_earliest(&self, d: &str) {
        *self.st.earliest.lock().expect("lock") = d.to_owned();
    }

    pub fn script(&self, f: impl FnOnce(&mut Script)) {
        f(&mut self.st.script.lock().expect("lock"));
    }

    /// Makes every token handed out so far invalid.
    pub fn expire_tokens(&self) {
        self.st.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// List requests received so far.
    pub fn list_requests(&self) -> usize {
        self.st.list_requests.load(Ordering::SeqCst)
    }

    /// Every request's query so far, in order.
    pub fn log(&self) -> Vec<String> {
        self.st.log.lock().expect("lock").clone()
    }

    /// The queries of the list requests (`ListRecords`, `ListIdentifiers`)
    /// so far, in order.
    pub fn list_log(&self) -> Vec<String> {
        self.log()
            .into_iter()
            .filter(|q| q.contains("verb=List"))
            .collect()
    }

    /// Forgets the request log.
    pub fn clear_log(&self) {
        self.st.log.lock().expect("lock").clear();
    }

    /// Waits until a request is held at the gate.
    pub async fn wait_held(&self) {
        let mut rx = self.st.held.subscribe();
        rx.wait_for(|n| *n > 0).await.expect("provider alive");
    }

    /// List requests fully served so far.
    pub fn served(&self) -> usize {
        *self.st.served.borrow()
    }

    /// Waits until `n` list requests were fully served.
    pub async fn wait_served(&self, n: usize) {
        let mut rx = self.st.served.subscribe();
        rx.wait_for(|s| *s >= n).await.expect("provider alive");
    }

    /// Holds the list request `after` requests from now at a new gate.
    pub fn hold(&self, after: usize) {
        *self.st.gate.lock().expect("lock") = watch::channel(false).0;
        self.st.held.send_replace(0);
        let n = self.list_requests() + after;
        self.st.script.lock().expect("lock").hold_at = Some(n);
    }

    /// Lets the held request through; later requests pass too.
    pub fn release(&self) {
        self.st.script.lock().expect("lock").hold_at = None;
        self.st.gate.lock().expect("lock").send_replace(true);
        self.st.held.send_replace(0);
    }
}

async fn handle(State(st): State<Arc<St>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut query: Vec<String> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
    query.sort();
    st.log.lock().expect("lock").push(query.join("&"));
    let verb = q.get("verb").map(String::as_str).unwrap_or("");
    match verb {
        "Identify" => xml(identify(&st)),
        "ListRecords" | "ListIdentifiers" => list(&st, &q, verb).await,
        "GetRecord" => get_record(&st, &q),
        _ => xml(envelope(
            &st,
            "",
            "<error code=\"badVerb\">bad verb</error>",
        )),
    }
}

fn xml(body: String) -> Response {
    ([("content-type", "text/xml; charset=utf-8")], body).into_response()
}

fn envelope(st: &St, request: &str, inner: &str) -> String {
    let rd = st.response_date.lock().expect("lock").clone();
    // dc and oai_dc are declared only here, on the root, as many providers
    // do: the harvester must carry them into each standalone document.
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<OAI-PMH xmlns=\"http://www.openarchives.org/OAI/2.0/\" \
         xmlns:oai_dc=\"http://www.openarchives.org/OAI/2.0/oai_dc/\" \
         xmlns:dc=\"http://purl.org/dc/elements/1.1/\">\
         <responseDate>{rd}</responseDate><request{request}>{}</request>{inner}</OAI-PMH>",
        st.url
    )
}

fn identify(st: &St) -> String {
    let g = st.granularity.lock().expect("lock").as_oai();
    let earliest = st.earliest.lock().expect("lock").clone();
    envelope(
        st,
        " verb=\"Identify\"",
        &format!(
            "<Identify><repositoryName>Fake</repositoryName><baseURL>{}</baseURL>\
             <protocolVersion>2.0</protocolVersion><adminEmail>admin@example.org</adminEmail>\
             <earliestDatestamp>{earliest}</earliestDatestamp><deletedRecord>persistent</deletedRecord>\
             <granularity>{g}</granularity></Identify>",
            st.url
        ),
    )
}

fn record_xml(r: &Rec, with_metadata: bool) -> String {
    let mut header = String::from("<header");
    if r.deleted {
        header.push_str(" status=\"deleted\"");
    }
    header.push_str(&format!(
        "><identifier>{}</identifier><datestamp>{}</datestamp>",
        r.id, r.datestamp
    ));
    for s in &r.sets {
        header.push_str(&format!("<setSpec>{s}</setSpec>"));
    }
    header.push_str("</header>");
    if !with_metadata {
        return header;
    }
    if r.deleted {
        return format!("<record>{header}</record>");
    }
    let n = r.id.rsplit(':').next().unwrap_or("0");
    let metadata = match &r.body {
        Body::Valid { revision } => format!(
            "<oai_dc:dc><dc:title>Record {n} revision {revision}</dc:title>\
             <dc:creator>Doe, Jane</dc:creator><dc:date>2026-01-01</dc:date>\
             <dc:identifier>urn:fake:{n}</dc:identifier>\
             <dc:identifier>https://example.org/item/{n}</dc:identifier></oai_dc:dc>"
        ),
        Body::Invalid => format!("<oai_dc:dc><dc:flavour>{n}</dc:flavour></oai_dc:dc>"),
        Body::Malformed => format!("<oai_dc:dc><dc:title>{n}</oai_dc:dc>"),
    };
    format!("<record>{header}<metadata>{metadata}</metadata></record>")
}

fn in_range(st: &St, r: &Rec, from: Option<&String>, until: Option<&String>) -> bool {
    let Ok(d) = Datestamp::parse(&r.datestamp) else {
        return false;
    };
    let _ = st;
    if let Some(f) = from.and_then(|f| Datestamp::parse(f).ok())
        && d.start() < f.start()
    {
        return false;
    }
    if let Some(u) = until.and_then(|u| Datestamp::parse(u).ok())
        && d.start() > u.end_inclusive()
    {
        return false;
    }
    true
}

/// Token: `generation|offset|from|until|set|prefix`.
fn token(st: &St, offset: usize, from: &str, until: &str, set: &str, prefix: &str) -> String {
    format!(
        "{}|{offset}|{from}|{until}|{set}|{prefix}",
        st.generation.load(Ordering::SeqCst)
    )
}

async fn list(st: &Arc<St>, q: &HashMap<String, String>, verb: &str) -> Response {
    let n = st.list_requests.fetch_add(1, Ordering::SeqCst) + 1;
    let (hold, fail, cut) = {
        let s = st.script.lock().expect("lock");
        (
            s.hold_at == Some(n),
            s.fail_from.is_some_and(|f| n >= f),
            s.cut_at == Some(n),
        )
    };
    if hold {
        let mut open = st.gate.lock().expect("lock").subscribe();
        st.held.send_modify(|h| *h += 1);
        let _ = open.wait_for(|o| *o).await;
    }
    if fail {
        return (StatusCode::INTERNAL_SERVER_ERROR, "provider down").into_response();
    }
    let (offset, from, until, set, prefix) = match q.get("resumptionToken") {
        Some(t) => {
            let parts: Vec<&str> = t.split('|').collect();
            let bad = {
                let mut s = st.script.lock().expect("lock");
                if s.bad_tokens > 0 {
                    s.bad_tokens -= 1;
                    true
                } else {
                    false
                }
            };
            let current = st.generation.load(Ordering::SeqCst).to_string();
            if bad || parts.len() != 6 || parts[0] != current {
                return xml(envelope(
                    st,
                    "",
                    "<error code=\"badResumptionToken\">expired</error>",
                ));
            }
            (
                parts[1].parse::<usize>().unwrap_or(0),
                parts[2].to_owned(),
                parts[3].to_owned(),
                parts[4].to_owned(),
                parts[5].to_owned(),
            )
        }
        None => (
            0,
            q.get("from").cloned().unwrap_or_default(),
            q.get("until").cloned().unwrap_or_default(),
            q.get("set").cloned().unwrap_or_default(),
            q.get("metadataPrefix").cloned().unwrap_or_default(),
        ),
    };
    if prefix != "oai_dc" {
        return xml(envelope(
            st,
            "",
            "<error code=\"cannotDisseminateFormat\">only oai_dc</error>",
        ));
    }
    let matching: Vec<Rec> = {
        let repo = st.repo.lock().expect("lock");
        let f = (!from.is_empty()).then_some(&from);
        let u = (!until.is_empty()).then_some(&until);
        repo.iter()
            .filter(|r| in_range(st, r, f, u))
            .filter(|r| set.is_empty() || r.sets.contains(&set))
            .cloned()
            .collect()
    };
    if matching.is_empty() {
        return xml(envelope(
            st,
            "",
            "<error code=\"noRecordsMatch\">nothing</error>",
        ));
    }
    let page: Vec<&Rec> = matching.iter().skip(offset).take(st.page_size).collect();
    let mut inner = format!("<{verb}>");
    for r in &page {
        inner.push_str(&record_xml(r, verb == "ListRecords"));
    }
    let next = offset + page.len();
    let loop_token = st.script.lock().expect("lock").loop_token;
    if loop_token {
        inner.push_str(&format!(
            "<resumptionToken completeListSize=\"{}\">{}</resumptionToken>",
            matching.len(),
            token(st, 0, &from, &until, &set, &prefix)
        ));
    } else if next < matching.len() {
        inner.push_str(&format!(
            "<resumptionToken completeListSize=\"{}\" cursor=\"{offset}\">{}</resumptionToken>",
            matching.len(),
            token(st, next, &from, &until, &set, &prefix)
        ));
    } else if offset > 0 {
        inner.push_str(&format!(
            "<resumptionToken completeListSize=\"{}\" cursor=\"{offset}\"/>",
            matching.len()
        ));
    }
    inner.push_str(&format!("</{verb}>"));
    let mut body = envelope(st, "", &inner);
    if cut {
        body.truncate(body.len() / 2);
    }
    st.served.send_modify(|s| *s += 1);
    xml(body)
}

fn get_record(st: &St, q: &HashMap<String, String>) -> Response {
    let id = q.get("identifier").cloned().unwrap_or_default();
    let repo = st.repo.lock().expect("lock");
    match repo.iter().find(|r| r.id == id) {
        Some(r) => xml(envelope(
            st,
            "",
            &format!("<GetRecord>{}</GetRecord>", record_xml(r, true)),
        )),
        None => xml(envelope(
            st,
            "",
            "<error code=\"idDoesNotExist\">no such record</error>",
        )),
    }
}
