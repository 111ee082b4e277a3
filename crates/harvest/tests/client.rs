//! The protocol client against a scripted, misbehaving provider (an axum
//! server on 127.0.0.1, one scripted reply per request): Retry-After in
//! both forms, capped; 5xx, timeouts, cut and reset connections with
//! backoff and jitter; empty and non-OAI bodies; badResumptionToken as its
//! own error; request shapes; compression; pacing; the
//! ListIdentifiers + GetRecord fallback; token-loop detection.
//!
//! Waits go through a `RecordingSleeper`, so tests assert the exact waits
//! without sleeping; the timeout and Tokio-sleeper tests run on a paused
//! clock.

use std::collections::VecDeque;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use sheaf_domain::{Granularity, SourceId};
use sheaf_harvest::client::{Client, ClientError, ListRequest, ListVerb};
use sheaf_harvest::config::SourceConfig;
use sheaf_harvest::guard::{LoopError, TokenLoopGuard};
use sheaf_harvest::parse::{OaiErrorCode, PageError};
use sheaf_harvest::retry::{RecordingSleeper, RetryPolicy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

// ---------------------------------------------------------------------------
// The scripted provider.

#[derive(Clone)]
enum Reply {
    /// 200 text/xml with this body.
    Xml(String),
    /// 200 text/xml with these bytes (not necessarily UTF-8).
    Bytes(Vec<u8>),
    /// Any status, extra headers, body.
    Status(u16, Vec<(&'static str, String)>, String),
    /// Never answers.
    Hang,
    /// Sends the start of a chunked body, then breaks the connection.
    Cut(String),
    /// 200 with the body compressed, `Content-Encoding` set accordingly.
    Compressed(&'static str, String),
}

#[derive(Clone, Default)]
struct Script {
    replies: Arc<Mutex<VecDeque<Reply>>>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Script {
    fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("lock").clone()
    }
}

async fn reply(State(s): State<Script>, uri: Uri) -> Response {
    s.seen
        .lock()
        .expect("lock")
        .push(uri.query().unwrap_or("").to_owned());
    let next = s.replies.lock().expect("lock").pop_front();
    match next {
        Some(Reply::Xml(body)) => ([(header::CONTENT_TYPE, "text/xml")], body).into_response(),
        Some(Reply::Bytes(body)) => ([(header::CONTENT_TYPE, "text/xml")], body).into_response(),
        Some(Reply::Status(code, headers, body)) => {
            let mut r = (
                StatusCode::from_u16(code).expect("status"),
                [(header::CONTENT_TYPE, "text/xml")],
                body,
            )
                .into_response();
            for (k, v) in headers {
                r.headers_mut().insert(k, v.parse().expect("header value"));
            }
            r
        }
        Some(Reply::Hang) => std::future::pending::<Response>().await,
        Some(Reply::Cut(partial)) => {
            let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
                Ok(Bytes::from(partial)),
                Err(std::io::Error::other("connection cut")),
            ];
            Body::from_stream(futures_util::stream::iter(chunks)).into_response()
        }
        Some(Reply::Compressed(encoding, body)) => {
            let bytes = match encoding {
                "gzip" => {
                    let mut e =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    e.write_all(body.as_bytes()).expect("gzip");
                    e.finish().expect("gzip")
                }
                _ => {
                    let mut e =
                        flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
                    e.write_all(body.as_bytes()).expect("deflate");
                    e.finish().expect("deflate")
                }
            };
            (
                [
                    (header::CONTENT_TYPE, "text/xml"),
                    (header::CONTENT_ENCODING, encoding),
                ],
                bytes,
            )
                .into_response()
        }
        None => (StatusCode::IM_A_TEAPOT, "script exhausted").into_response(),
    }
}

async fn provider(replies: Vec<Reply>) -> (SocketAddr, Script) {
    let script = Script::default();
    script.replies.lock().expect("lock").extend(replies);
    let app = Router::new().fallback(reply).with_state(script.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, script)
}

fn config(addr: SocketAddr) -> SourceConfig {
    let mut c = SourceConfig::new(
        SourceId::parse("test").expect("id"),
        format!("http://{addr}/oai").parse().expect("url"),
        "oai_dc",
    );
    c.retry = RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(8),
        retry_after_cap: Duration::from_secs(60),
    };
    c.timeout = Duration::from_secs(30);
    c
}

fn client(cfg: &SourceConfig) -> (Client, RecordingSleeper) {
    let sleeper = RecordingSleeper::new();
    let c = Client::new(cfg)
        .expect("client")
        .with_sleeper(Arc::new(sleeper.clone()));
    (c, sleeper)
}

// ---------------------------------------------------------------------------
// Canned responses.

const OAI_OPEN: &str = r#"<?xml version="1.0" encoding="UTF-8"?><OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/"><responseDate>2024-05-01T10:00:00Z</responseDate>"#;

fn identify(granularity: &str) -> Reply {
    Reply::Xml(format!(
        "{OAI_OPEN}<request verb=\"Identify\">x</request><Identify><repositoryName>Test</repositoryName><baseURL>http://x/oai</baseURL><protocolVersion>2.0</protocolVersion><adminEmail>a@x</adminEmail><earliestDatestamp>2001-01-01</earliestDatestamp><deletedRecord>persistent</deletedRecord><granularity>{granularity}</granularity></Identify></OAI-PMH>"
    ))
}

fn record(id: &str, deleted: bool) -> String {
    if deleted {
        format!(
            "<record><header status=\"deleted\"><identifier>{id}</identifier><datestamp>2024-01-01</datestamp></header></record>"
        )
    } else {
        format!(
            "<record><header><identifier>{id}</identifier><datestamp>2024-01-01</datestamp></header><metadata><dc xmlns=\"http://purl.org/dc/elements/1.1/\"><title>{id}</title></dc></metadata></record>"
        )
    }
}

fn list_records(ids: &[&str], token: Option<&str>) -> String {
    let records: String = ids.iter().map(|i| record(i, false)).collect();
    let token = token
        .map(|t| format!("<resumptionToken>{t}</resumptionToken>"))
        .unwrap_or_default();
    format!("{OAI_OPEN}<ListRecords>{records}{token}</ListRecords></OAI-PMH>")
}

fn error(code: &str) -> String {
    format!("{OAI_OPEN}<error code=\"{code}\">because</error></OAI-PMH>")
}

fn start() -> ListRequest {
    ListRequest::Start {
        verb: ListVerb::ListRecords,
        prefix: "oai_dc".into(),
        set: None,
        from: None,
        until: None,
    }
}

// ---------------------------------------------------------------------------
// Flow control.

#[tokio::test]
async fn retry_after_in_seconds_is_honoured() {
    let (addr, script) = provider(vec![
        Reply::Status(503, vec![("retry-after", "7".into())], String::new()),
        identify("YYYY-MM-DD"),
    ])
    .await;
    let (c, sleeper) = client(&config(addr));
    let id = c.identify().await.expect("identify after 503");
    assert_eq!(id.granularity, Granularity::Day);
    assert_eq!(sleeper.waits(), [Duration::from_secs(7)]);
    assert_eq!(script.seen().len(), 2);
    assert_eq!(c.stats().retries, 1);
}

#[tokio::test]
async fn retry_after_as_http_date_on_429() {
    let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(40));
    let (addr, _) = provider(vec![
        Reply::Status(429, vec![("retry-after", at)], "slow down".into()),
        identify("YYYY-MM-DDThh:mm:ssZ"),
    ])
    .await;
    let (c, sleeper) = client(&config(addr));
    c.identify().await.expect("identify after 429");
    let waits = sleeper.waits();
    assert_eq!(waits.len(), 1);
    assert!(
        waits[0] > Duration::from_secs(35) && waits[0] <= Duration::from_secs(40),
        "{waits:?}"
    );
}

#[tokio::test]
async fn retry_after_is_capped() {
    let (addr, _) = provider(vec![
        Reply::Status(503, vec![("retry-after", "86400".into())], String::new()),
        identify("YYYY-MM-DD"),
    ])
    .await;
    let (c, sleeper) = client(&config(addr));
    c.identify().await.expect("identify");
    assert_eq!(sleeper.waits(), [Duration::from_secs(60)]);
}

#[tokio::test]
async fn server_errors_back_off_exponentially_with_jitter() {
    let (addr, script) = provider(vec![
        Reply::Status(500, vec![], "oops".into()),
        Reply::Status(502, vec![], String::new()),
        Reply::Status(504, vec![], String::new()),
        Reply::Status(503, vec![], String::new()),
        Reply::Xml(list_records(&["a"], None)),
    ])
    .await;
    let mut cfg = config(addr);
    cfg.retry.max_delay = Duration::from_secs(3);
    let (c, sleeper) = client(&cfg);
    let page = c.list(&start()).await.expect("page after four 5xx");
    assert_eq!(page.records.len(), 1);
    let waits = sleeper.waits();
    let ceilings = [1, 2, 3, 3].map(Duration::from_secs);
    assert_eq!(waits.len(), 4);
    for (w, c) in waits.iter().zip(ceilings) {
        assert!(*w >= c / 2 && *w <= c, "{w:?} outside [{:?}, {c:?}]", c / 2);
    }
    assert_eq!(script.seen().len(), 5);
}

#[tokio::test]
async fn gives_up_after_max_attempts_with_the_last_error() {
    let (addr, script) = provider(vec![
        Reply::Status(500, vec![], String::new()),
        Reply::Status(500, vec![], String::new()),
        Reply::Status(503, vec![("retry-after", "5".into())], "busy".into()),
    ])
    .await;
    let mut cfg = config(addr);
    cfg.retry.max_attempts = 3;
    let (c, sleeper) = client(&cfg);
    match c.list(&start()).await {
        Err(ClientError::Exhausted {
            attempts,
            last,
            retry_after,
        }) => {
            assert_eq!(attempts, 3);
            assert!(
                matches!(*last, ClientError::Http { status: 503, .. }),
                "{last}"
            );
            assert_eq!(retry_after, Some(Duration::from_secs(5)));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(script.seen().len(), 3);
    assert_eq!(sleeper.waits().len(), 2);
}

#[tokio::test]
async fn empty_and_non_oai_200_bodies_are_retried() {
    let (addr, _) = provider(vec![
        Reply::Xml(String::new()),
        Reply::Xml("<html><body>Maintenance</body></html>".into()),
        Reply::Xml(list_records(&["a", "b"], None)),
    ])
    .await;
    let (c, sleeper) = client(&config(addr));
    let page = c.list(&start()).await.expect("page");
    assert_eq!(page.records.len(), 2);
    assert_eq!(sleeper.waits().len(), 2);

    let (addr, _) = provider(vec![Reply::Xml(String::new()); 5]).await;
    let (c, _) = client(&config(addr));
    match c.list(&start()).await {
        Err(ClientError::Exhausted { last, .. }) => assert_eq!(
            *last,
            ClientError::Page(PageError::NotOai("empty body".into()))
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_body_cut_mid_transfer_is_retried() {
    let full = list_records(&["a", "b"], Some("t1"));
    let (addr, script) = provider(vec![
        Reply::Cut(full[..full.len() / 2].to_owned()),
        Reply::Xml(full.clone()),
    ])
    .await;
    let (c, sleeper) = client(&config(addr));
    let page = c.list(&start()).await.expect("page after a cut");
    assert_eq!(page.next_token(), Some("t1"));
    assert_eq!(script.seen().len(), 2);
    assert_eq!(sleeper.waits().len(), 1);
}

#[tokio::test]
async fn connection_resets_and_refusals_are_retried() {
    // A hand-written provider: resets the first connection (RST via a zero
    // linger), answers the second.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let body = list_records(&["a"], None);
    tokio::spawn(async move {
        let (first, _) = listener.accept().await.expect("accept");
        first.set_zero_linger().expect("linger");
        drop(first);
        let (mut second, _) = listener.accept().await.expect("accept");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = second.read(&mut chunk).await.expect("read");
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        second.write_all(head.as_bytes()).await.expect("write");
        second.write_all(body.as_bytes()).await.expect("write");
    });
    let (c, sleeper) = client(&config(addr));
    let page = c.list(&start()).await.expect("page after a reset");
    assert_eq!(page.records.len(), 1);
    assert_eq!(sleeper.waits().len(), 1);

    // Nobody listening: refused every time, retried, then given up.
    let free = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let mut cfg = config(free);
    cfg.retry.max_attempts = 3;
    let (c, sleeper) = client(&cfg);
    match c.identify().await {
        Err(ClientError::Exhausted {
            attempts: 3, last, ..
        }) => {
            assert!(matches!(*last, ClientError::Transport(_)), "{last}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sleeper.waits().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_hung_request_times_out_and_is_retried() {
    let (addr, script) = provider(vec![
        Reply::Hang,
        Reply::Xml(list_records(&["a"], None)),
        Reply::Xml(list_records(&["a"], None)),
        Reply::Xml(list_records(&["a"], None)),
    ])
    .await;
    let before = tokio::time::Instant::now();
    let (c, sleeper) = client(&config(addr));
    let page = c.list(&start()).await.expect("page after a timeout");
    assert_eq!(page.records.len(), 1);
    // The paused clock ran through the 30 s timeout without real waiting.
    assert!(before.elapsed() >= Duration::from_secs(30));
    assert!(script.seen().len() >= 2);
    assert!(!sleeper.waits().is_empty());

    // Hung every time: the last error says timeout.
    let (addr, _) = provider(vec![Reply::Hang; 5]).await;
    let mut cfg = config(addr);
    cfg.retry.max_attempts = 2;
    let (c, _) = client(&cfg);
    match c.list(&start()).await {
        Err(ClientError::Exhausted { last, .. }) => {
            assert_eq!(*last, ClientError::Timeout(Duration::from_secs(30)))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn the_default_sleeper_follows_the_clock() {
    let (addr, _) = provider(vec![
        Reply::Status(503, vec![("retry-after", "20".into())], String::new()),
        identify("YYYY-MM-DD"),
    ])
    .await;
    let c = Client::new(&config(addr)).expect("client");
    let before = tokio::time::Instant::now();
    c.identify().await.expect("identify");
    assert!(before.elapsed() >= Duration::from_secs(20));
}

// ---------------------------------------------------------------------------
// Protocol errors.

#[tokio::test]
async fn bad_resumption_token_is_its_own_error_and_not_retried() {
    for status in [200, 422] {
        let (addr, script) = provider(vec![Reply::Status(
            status,
            vec![],
            error("badResumptionToken"),
        )])
        .await;
        let (c, sleeper) = client(&config(addr));
        let err = c
            .list(&ListRequest::Resume {
                verb: ListVerb::ListRecords,
                token: "expired".into(),
            })
            .await
            .expect_err("bad token");
        assert!(err.is_bad_resumption_token(), "{err}");
        assert_eq!(
            err,
            ClientError::BadResumptionToken {
                message: "because".into()
            }
        );
        assert_eq!(script.seen().len(), 1);
        assert!(sleeper.waits().is_empty());
    }
}

#[tokio::test]
async fn protocol_errors_are_final_and_no_records_match_is_empty() {
    let (addr, script) = provider(vec![
        Reply::Status(422, vec![], error("cannotDisseminateFormat")),
        Reply::Status(422, vec![], error("noRecordsMatch")),
        Reply::Xml(error("InternalException")),
        Reply::Xml(list_records(&["a"], None)),
        Reply::Status(404, vec![], "<html>not found</html>".into()),
    ])
    .await;
    let (c, sleeper) = client(&config(addr));
    assert_eq!(
        c.list(&start()).await,
        Err(ClientError::Oai {
            code: OaiErrorCode::CannotDisseminateFormat,
            message: "because".into()
        })
    );
    let page = c.list(&start()).await.expect("noRecordsMatch is success");
    assert!(page.no_records_match && page.is_empty() && page.next_token().is_none());
    // A code outside the protocol is a provider hiccup: retried.
    let page = c.list(&start()).await.expect("retried");
    assert_eq!(page.records.len(), 1);
    assert_eq!(sleeper.waits().len(), 1);
    match c.list(&start()).await {
        Err(ClientError::Http { status: 404, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(script.seen().len(), 5);
}

#[tokio::test]
async fn a_dirty_page_is_repaired_and_its_poisoned_record_rejected() {
    // A Latin-1 byte under a UTF-8 declaration, a control character, and
    // one record whose metadata is not well-formed.
    let mut body = format!(
        "{OAI_OPEN}<ListRecords>{}{}{}<resumptionToken>t2</resumptionToken></ListRecords></OAI-PMH>",
        record("a", false).replace("<title>a", "<title>caf\u{0}\u{1}"),
        record("b", false).replace("</title>", "</titel>"),
        record("c", false),
    )
    .into_bytes();
    let at = body.iter().position(|&b| b == 0).expect("marker");
    body[at] = 0xE9;
    let (addr, script) = provider(vec![Reply::Bytes(body)]).await;
    let (c, sleeper) = client(&config(addr));
    let page = c.list(&start()).await.expect("page kept");
    assert_eq!(script.seen().len(), 1);
    assert!(
        sleeper.waits().is_empty(),
        "a poisoned record is no reason to retry"
    );
    assert_eq!(page.next_token(), Some("t2"));
    let ids: Vec<_> = page
        .records
        .iter()
        .map(|r| r.header.identifier.as_str())
        .collect();
    assert_eq!(ids, ["a", "b", "c"]);
    let a = String::from_utf8(page.records[0].metadata.clone().expect("a").expect("doc"))
        .expect("utf8");
    assert!(a.contains("<title>café</title>"), "{a}");
    assert_eq!(
        page.records[0].warnings.len(),
        2,
        "{:?}",
        page.records[0].warnings
    );
    let why = page.records[1].metadata.clone().expect_err("b rejected");
    assert!(why.contains("</titel>"), "{why}");
    assert!(String::from_utf8_lossy(&page.records[1].raw).contains("</titel>"));
    assert!(page.records[2].metadata.as_ref().is_ok_and(Option::is_some));
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let (addr, script) = provider(vec![Reply::Xml(list_records(&["a"; 40], None))]).await;
    let mut cfg = config(addr);
    cfg.max_page_bytes = 1024;
    let (c, _) = client(&cfg);
    assert_eq!(
        c.list(&start()).await,
        Err(ClientError::TooLarge { limit: 1024 })
    );
    assert_eq!(script.seen().len(), 1);
}

// ---------------------------------------------------------------------------
// Requests.

#[tokio::test]
async fn request_shapes_verb_first_and_tokens_alone_and_encoded() {
    let (addr, script) = provider(vec![
        Reply::Xml(list_records(&["a"], Some("a b+c/d|e=f&amp;g"))),
        Reply::Xml(list_records(&["b"], None)),
    ])
    .await;
    let mut cfg = config(addr);
    cfg.base_url = format!("http://{addr}/oai?key=k1").parse().expect("url");
    let (c, _) = client(&cfg);
    let first = c
        .list(&ListRequest::Start {
            verb: ListVerb::ListRecords,
            prefix: "oai_dc".into(),
            set: Some("math:AG".into()),
            from: Some("2024-01-01".into()),
            until: Some("2024-01-31T23:59:59Z".into()),
        })
        .await
        .expect("first");
    let token = first.next_token().expect("token").to_owned();
    assert_eq!(token, "a b+c/d|e=f&g");
    c.list(&ListRequest::Resume {
        verb: ListVerb::ListRecords,
        token,
    })
    .await
    .expect("second");
    assert_eq!(
        script.seen(),
        [
            "verb=ListRecords&metadataPrefix=oai_dc&from=2024-01-01&until=2024-01-31T23%3A59%3A59Z&set=math%3AAG&key=k1",
            "verb=ListRecords&resumptionToken=a%20b%2Bc%2Fd%7Ce%3Df%26g&key=k1",
        ]
    );
}

#[tokio::test]
async fn identify_gives_the_granularity_for_dates() {
    let (addr, _) = provider(vec![
        identify("YYYY-MM-DD"),
        identify("YYYY-MM-DDThh:mm:ssZ"),
    ])
    .await;
    let (c, _) = client(&config(addr));
    let t = chrono::DateTime::parse_from_rfc3339("2024-05-01T10:11:12Z")
        .expect("time")
        .to_utc();
    let day = c.identify().await.expect("identify");
    assert_eq!(day.format_datestamp(t), "2024-05-01");
    assert_eq!(day.earliest_datestamp.as_deref(), Some("2001-01-01"));
    assert_eq!(day.deleted_record, "persistent");
    let secs = c.identify().await.expect("identify");
    assert_eq!(secs.format_datestamp(t), "2024-05-01T10:11:12Z");
}

#[tokio::test]
async fn gzip_and_deflate_are_decoded() {
    let (addr, _) = provider(vec![
        Reply::Compressed("gzip", list_records(&["g"], None)),
        Reply::Compressed("deflate", list_records(&["d"], None)),
    ])
    .await;
    let (c, _) = client(&config(addr));
    assert_eq!(
        c.list(&start()).await.expect("gzip").records[0]
            .header
            .identifier,
        "g"
    );
    assert_eq!(
        c.list(&start()).await.expect("deflate").records[0]
            .header
            .identifier,
        "d"
    );
}

#[tokio::test]
async fn pacing_spaces_requests() {
    let (addr, _) = provider(vec![identify("YYYY-MM-DD"), identify("YYYY-MM-DD")]).await;
    let mut cfg = config(addr);
    cfg.pacing = Duration::from_secs(3);
    let (c, sleeper) = client(&cfg);
    c.identify().await.expect("first");
    c.identify().await.expect("second");
    let waits = sleeper.waits();
    assert_eq!(waits.len(), 1);
    assert!(
        waits[0] > Duration::from_millis(2500) && waits[0] <= Duration::from_secs(3),
        "{waits:?}"
    );
}

// ---------------------------------------------------------------------------
// Chains.

/// Follows a chain the way the run loop does: tokens until missing or
/// empty, guarded.
async fn harvest(c: &Client, guard: &mut TokenLoopGuard) -> Result<Vec<String>, LoopError> {
    let mut ids = Vec::new();
    let mut req = start();
    loop {
        let page = c.list(&req).await.expect("page");
        guard.check(&page)?;
        ids.extend(page.records.iter().map(|r| r.header.identifier.clone()));
        match page.next_token() {
            Some(t) => {
                req = ListRequest::Resume {
                    verb: ListVerb::ListRecords,
                    token: t.to_owned(),
                }
            }
            None => return Ok(ids),
        }
    }
}

#[tokio::test]
async fn tokens_are_followed_to_the_end_and_loops_stopped() {
    let (addr, script) = provider(vec![
        Reply::Xml(list_records(&["a", "b"], Some("t1"))),
        Reply::Xml(list_records(&[], Some("t2"))),
        Reply::Xml(list_records(&["c"], Some(""))),
    ])
    .await;
    let (c, _) = client(&config(addr));
    let ids = harvest(&c, &mut TokenLoopGuard::new(5))
        .await
        .expect("chain");
    assert_eq!(ids, ["a", "b", "c"]);
    assert_eq!(script.seen().len(), 3);

    // The same token again: stopped with a clear error.
    let (addr, script) = provider(vec![
        Reply::Xml(list_records(&["a"], Some("t1"))),
        Reply::Xml(list_records(&["b"], Some("t1"))),
        Reply::Xml(list_records(&["c"], None)),
    ])
    .await;
    let (c, _) = client(&config(addr));
    let err = harvest(&c, &mut TokenLoopGuard::new(5))
        .await
        .expect_err("loop");
    assert_eq!(
        err,
        LoopError::RepeatedToken {
            token: "t1".into(),
            page: 2
        }
    );
    assert_eq!(script.seen().len(), 2);

    // New tokens, same page: no progress.
    let (addr, _) = provider(vec![
        Reply::Xml(list_records(&["a"], Some("t1"))),
        Reply::Xml(list_records(&["a"], Some("t2"))),
    ])
    .await;
    let (c, _) = client(&config(addr));
    assert_eq!(
        harvest(&c, &mut TokenLoopGuard::new(5)).await,
        Err(LoopError::RepeatedPage { page: 2 })
    );
}

#[tokio::test]
async fn list_identifiers_then_get_record() {
    let headers = format!(
        "{OAI_OPEN}<ListIdentifiers><header><identifier>a</identifier><datestamp>2024-01-01</datestamp></header><header status=\"deleted\"><identifier>b</identifier><datestamp>2024-01-01</datestamp></header><header><identifier>gone</identifier><datestamp>2024-01-01</datestamp></header><resumptionToken/></ListIdentifiers></OAI-PMH>"
    );
    let get = |id: &str| {
        Reply::Xml(format!(
            "{OAI_OPEN}<GetRecord>{}</GetRecord></OAI-PMH>",
            record(id, false)
        ))
    };
    let (addr, script) = provider(vec![
        Reply::Xml(headers),
        get("a"),
        Reply::Status(422, vec![], error("idDoesNotExist")),
    ])
    .await;
    let (c, _) = client(&config(addr));
    let page = c
        .list(&ListRequest::Start {
            verb: ListVerb::ListIdentifiers,
            prefix: "oai_dc".into(),
            set: None,
            from: None,
            until: None,
        })
        .await
        .expect("identifiers");
    assert_eq!(page.identifiers.len(), 3);
    assert_eq!(page.next_token(), None);
    let records = c
        .expand_identifiers(&page.identifiers, "oai_dc")
        .await
        .expect("records");
    assert_eq!(records.len(), 3);
    assert!(records[0].metadata.as_ref().is_ok_and(Option::is_some));
    assert_eq!(records[1].metadata, Ok(None));
    assert!(
        records[2]
            .metadata
            .as_ref()
            .is_err_and(|e| e.contains("idDoesNotExist"))
    );
    let seen = script.seen();
    assert_eq!(seen.len(), 3, "no GetRecord for the deleted header");
    assert_eq!(seen[1], "verb=GetRecord&identifier=a&metadataPrefix=oai_dc");
    assert_eq!(
        c.get_record("a", "oai_dc").await,
        Err(ClientError::Http {
            status: 418,
            retry_after: None,
            body: "script exhausted".into()
        })
    );
}
