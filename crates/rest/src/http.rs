//! HTTP details shared by the schema and metadata handlers: query
//! parameters, paging and `Content-Range`, `Accept` negotiation, `If-Match`,
//! absolute URLs, and reading multipart bodies with clear errors.
//!
//! Depends on axum and the error type only.

use axum::extract::Multipart;
use axum::extract::multipart::MultipartRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::error::ApiError;

/// The media type of a DataCite record.
pub(crate) const DATACITE_JSON: &str = "application/vnd.datacite.org+json";

/// The page size when a list request names none, as MetaStore.
pub(crate) const DEFAULT_PAGE_SIZE: i64 = 20;
/// The largest page a list request may ask for.
pub(crate) const MAX_PAGE_SIZE: i64 = 1000;

/// Characters escaped in a path segment (ids may hold `/`, `?`, `%`, …).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Escapes an id for use as one URL path segment.
pub(crate) fn segment(id: &str) -> String {
    utf8_percent_encode(id, SEGMENT).to_string()
}

/// The decoded query parameters of a request, in order, repeats kept.
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn parse(raw: Option<&str>) -> Self {
        Self(
            url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// Every value of any of `names` (aliases), in order.
    pub(crate) fn all(&self, names: &[&str]) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| names.contains(&k.as_str()))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The one value of `name`; a repeat is an error.
    pub(crate) fn one(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut found = self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
        let first = found.next();
        if found.next().is_some() {
            return Err(ApiError::BadRequest(format!("{name} given more than once")));
        }
        Ok(first.map(String::as_str))
    }

    /// `?version=N`: a version number, 1 or more.
    pub(crate) fn version(&self) -> Result<Option<i64>, ApiError> {
        self.one("version")?
            .map(|v| {
                v.parse::<i64>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    ApiError::BadRequest(format!("version must be a number from 1, not {v:?}"))
                })
            })
            .transpose()
    }

    /// `page` (from 0) and `size` (1 to [`MAX_PAGE_SIZE`]).
    pub(crate) fn page(&self) -> Result<Page, ApiError> {
        let number = |name: &str, default: i64, min: i64, max: i64| -> Result<i64, ApiError> {
            match self.one(name)? {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (min..=max).contains(n))
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "{name} must be a whole number from {min} to {max}, not {v:?}"
                        ))
                    }),
            }
        };
        let size = number("size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)?;
        let page = number("page", 0, 0, i64::from(i32::MAX))?;
        Ok(Page {
            offset: page * size,
            size,
        })
    }

    /// `from`/`until`: an RFC 3339 instant or a day (the day's start for
    /// `from`, its end for `until`).
    pub(crate) fn instant(
        &self,
        name: &str,
        end_of_day: bool,
    ) -> Result<Option<DateTime<Utc>>, ApiError> {
        let Some(v) = self.one(name)? else {
            return Ok(None);
        };
        if let Ok(t) = DateTime::parse_from_rfc3339(v) {
            return Ok(Some(t.with_timezone(&Utc)));
        }
        NaiveDate::parse_from_str(v, "%Y-%m-%d")
            .ok()
            .and_then(|d| {
                if end_of_day {
                    d.and_hms_micro_opt(23, 59, 59, 999_999)
                } else {
                    d.and_hms_opt(0, 0, 0)
                }
            })
            .map(|t| Some(t.and_utc()))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "{name} must be an instant like 2024-11-25T13:50:12Z or a day like 2024-11-25, not {v:?}"
                ))
            })
    }
}

/// One page of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Page {
    pub offset: i64,
    pub size: i64,
}

impl Page {
    /// The page of an in-memory list.
    pub(crate) fn slice<T>(&self, items: Vec<T>) -> Vec<T> {
        let offset = usize::try_from(self.offset).unwrap_or(usize::MAX);
        let size = usize::try_from(self.size).unwrap_or(0);
        items.into_iter().skip(offset).take(size).collect()
    }

    /// The `Content-Range` of `count` items from this page out of `total`:
    /// `0-19/134`, or `*/134` when the page is empty.
    pub(crate) fn content_range(&self, count: usize, total: i64) -> HeaderValue {
        let text = if count == 0 {
            format!("*/{total}")
        } else {
            format!("{}-{}/{total}", self.offset, self.offset + count as i64 - 1)
        };
        // Digits, `-`, `*` and `/` only.
        HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("*/0"))
    }

    /// A list answer: the page's items as a JSON array with the
    /// `Content-Range` they cover out of `total`.
    pub(crate) fn respond<T: serde::Serialize>(
        &self,
        items: &[T],
        total: i64,
    ) -> Result<Response, ApiError> {
        let body = serde_json::to_vec(items).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok((
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
                (
                    header::CONTENT_RANGE,
                    self.content_range(items.len(), total),
                ),
            ],
            body,
        )
            .into_response())
    }
}

/// What a `GET` of one schema or record should return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wanted {
    /// The DataCite record (`application/vnd.datacite.org+json`).
    Record,
    /// The document itself.
    Document,
}

/// Reads `Accept`: the record when it names the DataCite type, else the
/// document when it accepts XML, JSON, plain text or anything (MetaStore
/// answers both of a document's types alike); 406 otherwise.
pub(crate) fn negotiate(headers: &HeaderMap) -> Result<Wanted, ApiError> {
    let Some(accept) = headers.get(header::ACCEPT) else {
        return Ok(Wanted::Document);
    };
    let accept = accept
        .to_str()
        .map_err(|_| ApiError::BadRequest("Accept is not ASCII".into()))?;
    let mut document = false;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let refused = parts.any(|p| {
            let p = p.trim().replace(' ', "");
            p == "q=0" || p == "q=0.0" || p == "q=0.00" || p == "q=0.000"
        });
        if refused {
            continue;
        }
        match media.as_str() {
            DATACITE_JSON => return Ok(Wanted::Record),
            "application/xml" | "text/xml" | "application/json" | "text/plain" | "*/*"
            | "application/*" | "text/*" | "" => document = true,
            _ => {}
        }
    }
    if document {
        Ok(Wanted::Document)
    } else {
        Err(ApiError::NotAcceptable(format!(
            "cannot answer with {accept}; this resource is available as {DATACITE_JSON} \
             (its record) or as application/xml or application/json (its document)"
        )))
    }
}

/// `If-Match` of a write: 428 without it, and whether it names `etag`.
pub(crate) fn if_match(headers: &HeaderMap, etag: &str) -> Result<bool, ApiError> {
    let value = headers.get(header::IF_MATCH).ok_or_else(|| {
        ApiError::PreconditionRequired(
            "this write needs If-Match with the ETag of the current version".into(),
        )
    })?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::BadRequest("If-Match is not ASCII".into()))?;
    let wanted = etag.trim_matches('"');
    Ok(value.split(',').any(|tag| {
        let tag = tag.trim();
        // Weak tags are compared by their opaque part: proxies weaken ETags
        // when they compress, and the version check decides anyway.
        let tag = tag.strip_prefix("W/").unwrap_or(tag);
        tag == "*" || tag.trim_matches('"') == wanted
    }))
}

/// Requires a `multipart/form-data` body (415 otherwise).
pub(crate) fn require_multipart(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("multipart/form-data"))
    {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "expected Content-Type multipart/form-data, got {}",
            if ct.is_empty() { "none" } else { ct }
        )))
    }
}

/// Refuses a body whose declared length is over `limit` before reading it.
pub(crate) fn check_length(headers: &HeaderMap, limit: usize) -> Result<(), ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit as u64 => Err(ApiError::PayloadTooLarge(format!(
            "the body has {n} bytes; the limit is {limit}"
        ))),
        _ => Ok(()),
    }
}

/// The named parts of a multipart body.
#[derive(Debug, Default)]
pub(crate) struct Parts {
    parts: Vec<(String, Bytes)>,
}

impl Parts {
    /// Reads every part; `allowed` names the parts this request takes,
    /// each at most once (others are refused, so a typo is not ignored).
    pub(crate) async fn read(
        mut multipart: Multipart,
        allowed: &[&str],
        limit: usize,
    ) -> Result<Self, ApiError> {
        let mut out = Parts::default();
        let fail = |e: axum::extract::multipart::MultipartError| {
            let status = e.status();
            let text = e.body_text();
            if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(format!("the body is over the limit of {limit} bytes"))
            } else {
                ApiError::BadRequest(format!("malformed multipart body: {text}"))
            }
        };
        while let Some(field) = multipart.next_field().await.map_err(fail)? {
            let name = field.name().unwrap_or("").to_owned();
            if !allowed.contains(&name.as_str()) {
                return Err(ApiError::BadRequest(format!(
                    "unexpected part {name:?}; this request takes {}",
                    allowed.join(", ")
                )));
            }
            if out.parts.iter().any(|(n, _)| *n == name) {
                return Err(ApiError::BadRequest(format!("part {name:?} given twice")));
            }
            let bytes = field.bytes().await.map_err(fail)?;
            out.parts.push((name, bytes));
        }
        Ok(out)
    }

    /// A part, if sent.
    pub(crate) fn get(&self, name: &str) -> Option<&Bytes> {
        self.parts.iter().find(|(n, _)| n == name).map(|(_, b)| b)
    }

    /// A part that must be there (400 otherwise).
    pub(crate) fn require(&self, name: &str) -> Result<&Bytes, ApiError> {
        self.get(name)
            .ok_or_else(|| ApiError::BadRequest(format!("the multipart part {name:?} is missing")))
    }

    /// Whether no part was sent.
    pub(crate) fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
}

/// The scheme, host and port clients reach this server by: the configured
/// public base URL, else `http://` and the request's `Host`.
pub(crate) fn origin(public_base_url: Option<&str>, headers: &HeaderMap) -> String {
    if let Some(base) = public_base_url {
        return base.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.:[]_".contains(c))
        })
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// A header value from text Sheaf made (ids are percent-encoded in URLs).
pub(crate) fn header_value(s: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(s).map_err(|_| ApiError::Internal(format!("bad header value {s:?}")))
}

/// The multipart body of a create or update, after checking its content
/// type and declared length: 415, 413 or 400 with the parser's reason.
pub(crate) fn multipart_body(
    headers: &HeaderMap,
    limit: usize,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Multipart, ApiError> {
    require_multipart(headers)?;
    check_length(headers, limit)?;
    multipart
        .map_err(|e| ApiError::BadRequest(format!("malformed multipart body: {}", e.body_text())))
}

/// A response carrying one rendered record with its `Location` and `ETag`.
pub(crate) fn record_response<T: serde::Serialize>(
    status: StatusCode,
    content_type: &'static str,
    record: &T,
    location: &str,
    etag: &str,
) -> Result<Response, ApiError> {
    let body = serde_json::to_vec(record).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((
        status,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::LOCATION, header_value(location)?),
            (header::ETAG, header_value(etag)?),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: header::HeaderName, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn content_range_shapes() {
        let p = Page {
            offset: 0,
            size: 20,
        };
        assert_eq!(p.content_range(20, 134), "0-19/134");
        assert_eq!(p.content_range(0, 0), "*/0");
        let p = Page {
            offset: 40,
            size: 20,
        };
        assert_eq!(p.content_range(3, 43), "40-42/43");
    }

    #[test]
    fn page_and_size_are_checked() {
        assert_eq!(
            Params::parse(None).page().ok(),
            Some(Page {
                offset: 0,
                size: 20
            })
        );
        assert_eq!(
            Params::parse(Some("page=2&size=5")).page().ok(),
            Some(Page {
                offset: 10,
                size: 5
            })
        );
        for bad in ["page=-1", "size=0", "size=1001", "page=x", "size=1&size=2"] {
            assert!(Params::parse(Some(bad)).page().is_err(), "{bad}");
        }
    }

    #[test]
    fn accept_negotiation() {
        assert_eq!(negotiate(&HeaderMap::new()).ok(), Some(Wanted::Document));
        let h = headers(header::ACCEPT, DATACITE_JSON);
        assert_eq!(negotiate(&h).ok(), Some(Wanted::Record));
        let h = headers(header::ACCEPT, "application/xml");
        assert_eq!(negotiate(&h).ok(), Some(Wanted::Document));
        let h = headers(header::ACCEPT, "text/html");
        assert!(matches!(negotiate(&h), Err(ApiError::NotAcceptable(_))));
        let h = headers(header::ACCEPT, "text/html, */*;q=0.1");
        assert_eq!(negotiate(&h).ok(), Some(Wanted::Document));
    }

    #[test]
    fn if_match_forms() {
        assert!(matches!(
            if_match(&HeaderMap::new(), "\"a\""),
            Err(ApiError::PreconditionRequired(_))
        ));
        assert_eq!(
            if_match(&headers(header::IF_MATCH, "\"a\""), "\"a\"").ok(),
            Some(true)
        );
        assert_eq!(
            if_match(&headers(header::IF_MATCH, "W/\"a\""), "\"a\"").ok(),
            Some(true)
        );
        assert_eq!(
            if_match(&headers(header::IF_MATCH, "\"b\", \"a\""), "\"a\"").ok(),
            Some(true)
        );
        assert_eq!(
            if_match(&headers(header::IF_MATCH, "\"b\""), "\"a\"").ok(),
            Some(false)
        );
    }

    #[test]
    fn instants_and_days() {
        let p = Params::parse(Some(
            "from=2024-11-25T11%3A50%3A12.797908423Z&until=2024-11-25",
        ));
        assert!(p.instant("from", false).ok().flatten().is_some());
        let until = p.instant("until", true).ok().flatten().expect("day");
        assert_eq!(until.to_rfc3339(), "2024-11-25T23:59:59.999999+00:00");
        assert!(
            Params::parse(Some("from=yesterday"))
                .instant("from", false)
                .is_err()
        );
    }

    #[test]
    fn segments_escape_slashes() {
        assert_eq!(segment("src:oai:x/1"), "src:oai:x%2F1");
    }
}
