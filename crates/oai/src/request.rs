//! Turns the arguments of an OAI-PMH request into a typed [`OaiRequest`],
//! in one place: every `badVerb` and `badArgument` comes from here.
//!
//! Depends on `sheaf-domain` for datestamps.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use sheaf_domain::Datestamp;

use crate::error::{Code, OaiError};

/// The selection a list starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Selection {
    pub prefix: String,
    pub from: Option<Datestamp>,
    pub until: Option<Datestamp>,
    pub set: Option<String>,
}

/// How a list request names its page: a fresh selection or a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListArgs {
    Start(Selection),
    Resume(String),
}

/// One well-formed OAI-PMH request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OaiRequest {
    Identify,
    ListMetadataFormats { identifier: Option<String> },
    ListSets { resumption_token: Option<String> },
    GetRecord { identifier: String, prefix: String },
    ListIdentifiers(ListArgs),
    ListRecords(ListArgs),
}

impl OaiRequest {
    /// The verb, as spelled in the protocol.
    pub(crate) fn verb(&self) -> &'static str {
        match self {
            OaiRequest::Identify => "Identify",
            OaiRequest::ListMetadataFormats { .. } => "ListMetadataFormats",
            OaiRequest::ListSets { .. } => "ListSets",
            OaiRequest::GetRecord { .. } => "GetRecord",
            OaiRequest::ListIdentifiers(_) => "ListIdentifiers",
            OaiRequest::ListRecords(_) => "ListRecords",
        }
    }

    /// The attributes of the response's `<request>` element: the verb and
    /// the arguments as received (all of them passed the checks here, so
    /// they fit the response schema).
    pub(crate) fn echo(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("verb", self.verb().to_owned())];
        let list = |args: &ListArgs, out: &mut Vec<(&'static str, String)>| match args {
            ListArgs::Resume(t) => out.push(("resumptionToken", t.clone())),
            ListArgs::Start(s) => {
                out.push(("metadataPrefix", s.prefix.clone()));
                if let Some(f) = &s.from {
                    out.push(("from", f.to_string()));
                }
                if let Some(u) = &s.until {
                    out.push(("until", u.to_string()));
                }
                if let Some(set) = &s.set {
                    out.push(("set", set.clone()));
                }
            }
        };
        match self {
            OaiRequest::Identify => {}
            OaiRequest::ListMetadataFormats { identifier } => {
                if let Some(i) = identifier.as_ref().filter(|i| is_uri_safe(i)) {
                    out.push(("identifier", i.clone()));
                }
            }
            OaiRequest::ListSets { resumption_token } => {
                if let Some(t) = resumption_token {
                    out.push(("resumptionToken", t.clone()));
                }
            }
            OaiRequest::GetRecord { identifier, prefix } => {
                if is_uri_safe(identifier) {
                    out.push(("identifier", identifier.clone()));
                }
                out.push(("metadataPrefix", prefix.clone()));
            }
            OaiRequest::ListIdentifiers(a) | OaiRequest::ListRecords(a) => list(a, &mut out),
        }
        out
    }
}

fn bad(message: impl Into<String>) -> OaiError {
    OaiError::new(Code::BadArgument, message)
}

/// Parses the (already URL-decoded) arguments of a GET query or POST body.
pub(crate) fn parse(pairs: Vec<(String, String)>) -> Result<OaiRequest, OaiError> {
    let mut verbs = Vec::new();
    let mut args = BTreeMap::new();
    let mut repeated = None;
    for (k, v) in pairs {
        if k == "verb" {
            verbs.push(v);
        } else {
            match args.entry(k) {
                Entry::Occupied(e) => {
                    repeated.get_or_insert_with(|| e.key().clone());
                }
                Entry::Vacant(e) => {
                    e.insert(v);
                }
            }
        }
    }
    let verb = match verbs.as_slice() {
        [] => return Err(OaiError::new(Code::BadVerb, "the verb argument is missing")),
        [v] => v.as_str(),
        _ => {
            return Err(OaiError::new(
                Code::BadVerb,
                "the verb argument is repeated",
            ));
        }
    };
    let allowed: &[&str] = match verb {
        "Identify" => &[],
        "ListMetadataFormats" => &["identifier"],
        "ListSets" => &["resumptionToken"],
        "GetRecord" => &["identifier", "metadataPrefix"],
        "ListIdentifiers" | "ListRecords" => {
            &["resumptionToken", "metadataPrefix", "from", "until", "set"]
        }
        other => {
            return Err(OaiError::new(
                Code::BadVerb,
                format!("{:?} is not an OAI-PMH verb", truncate(other)),
            ));
        }
    };
    if let Some(k) = repeated {
        return Err(bad(format!("the argument {:?} is repeated", truncate(&k))));
    }
    if let Some(k) = args.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(bad(format!(
            "{:?} is not an argument of {verb}",
            truncate(k)
        )));
    }
    if let Some((k, _)) = args.iter().find(|(_, v)| v.is_empty()) {
        return Err(bad(format!("the argument {k} is empty")));
    }
    if args.contains_key("resumptionToken") && args.len() > 1 {
        return Err(bad("resumptionToken is an exclusive argument"));
    }
    let mut take = |k: &str| args.remove(k);
    Ok(match verb {
        "Identify" => OaiRequest::Identify,
        "ListMetadataFormats" => OaiRequest::ListMetadataFormats {
            identifier: take("identifier"),
        },
        "ListSets" => OaiRequest::ListSets {
            resumption_token: take("resumptionToken"),
        },
        "GetRecord" => {
            let identifier = take("identifier").ok_or_else(|| bad("identifier is required"))?;
            let prefix = prefix(take("metadataPrefix"))?;
            OaiRequest::GetRecord { identifier, prefix }
        }
        _ => {
            let list = if let Some(t) = take("resumptionToken") {
                ListArgs::Resume(t)
            } else {
                ListArgs::Start(selection(
                    take("metadataPrefix"),
                    take("from"),
                    take("until"),
                    take("set"),
                )?)
            };
            if verb == "ListRecords" {
                OaiRequest::ListRecords(list)
            } else {
                OaiRequest::ListIdentifiers(list)
            }
        }
    })
}

fn prefix(p: Option<String>) -> Result<String, OaiError> {
    let p = p.ok_or_else(|| bad("metadataPrefix is required"))?;
    if is_prefix(&p) {
        Ok(p)
    } else {
        Err(bad(format!(
            "metadataPrefix {:?} has characters OAI-PMH does not allow",
            truncate(&p)
        )))
    }
}

fn selection(
    prefix_arg: Option<String>,
    from: Option<String>,
    until: Option<String>,
    set: Option<String>,
) -> Result<Selection, OaiError> {
    let prefix = prefix(prefix_arg)?;
    let date = |name: &str, v: Option<String>| {
        v.map(|v| {
            Datestamp::parse(&v).map_err(|_| {
                bad(format!(
                    "{name} {:?} is not of the form YYYY-MM-DD or YYYY-MM-DDThh:mm:ssZ",
                    truncate(&v)
                ))
            })
        })
        .transpose()
    };
    let from = date("from", from)?;
    let until = date("until", until)?;
    if let (Some(f), Some(u)) = (&from, &until) {
        if f.granularity() != u.granularity() {
            return Err(bad("from and until have different granularities"));
        }
        if f.start() > u.start() {
            return Err(bad("from is later than until"));
        }
    }
    if let Some(s) = &set
        && !is_set_spec(s)
    {
        return Err(bad(format!("set {:?} is not a setSpec", truncate(s))));
    }
    Ok(Selection {
        prefix,
        from,
        until,
        set,
    })
}

/// The characters OAI-PMH allows in a metadataPrefix and a setSpec part.
fn is_spec_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.!~*'()".contains(c)
}

/// OAI-PMH's `metadataPrefixType`.
pub(crate) fn is_prefix(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_spec_char)
}

/// OAI-PMH's `setSpecType`: colon-separated non-empty parts.
pub(crate) fn is_set_spec(s: &str) -> bool {
    s.split(':').all(is_prefix)
}

/// Whether a value can be echoed as an `anyURI` attribute.
fn is_uri_safe(s: &str) -> bool {
    !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Keeps echoed garbage short in messages.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(q: &[(&str, &str)]) -> Result<OaiRequest, OaiError> {
        parse(
            q.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn code(q: &[(&str, &str)]) -> Code {
        p(q).expect_err("should fail").code
    }

    #[test]
    fn verbs() {
        assert_eq!(code(&[]), Code::BadVerb);
        assert_eq!(code(&[("verb", "Nope")]), Code::BadVerb);
        assert_eq!(
            code(&[("verb", "Identify"), ("verb", "Identify")]),
            Code::BadVerb
        );
        assert_eq!(p(&[("verb", "Identify")]), Ok(OaiRequest::Identify));
    }

    #[test]
    fn arguments() {
        assert_eq!(code(&[("verb", "Identify"), ("x", "1")]), Code::BadArgument);
        assert_eq!(
            code(&[("verb", "GetRecord"), ("identifier", "a")]),
            Code::BadArgument
        );
        assert_eq!(
            code(&[
                ("verb", "ListRecords"),
                ("metadataPrefix", "a"),
                ("metadataPrefix", "a")
            ]),
            Code::BadArgument
        );
        assert_eq!(
            code(&[
                ("verb", "ListRecords"),
                ("resumptionToken", "t"),
                ("metadataPrefix", "a")
            ]),
            Code::BadArgument
        );
        assert_eq!(
            code(&[
                ("verb", "ListRecords"),
                ("metadataPrefix", "a"),
                ("from", "2020-01-01"),
                ("until", "2020-01-01T00:00:00Z")
            ]),
            Code::BadArgument
        );
        assert_eq!(
            code(&[
                ("verb", "ListRecords"),
                ("metadataPrefix", "a"),
                ("from", "2020-01-02"),
                ("until", "2020-01-01")
            ]),
            Code::BadArgument
        );
        assert_eq!(
            code(&[("verb", "ListRecords"), ("metadataPrefix", "a b")]),
            Code::BadArgument
        );
        assert_eq!(
            code(&[
                ("verb", "ListRecords"),
                ("metadataPrefix", "a"),
                ("set", "a::b")
            ]),
            Code::BadArgument
        );
        let ok = p(&[
            ("verb", "ListRecords"),
            ("metadataPrefix", "oai_dc"),
            ("from", "2020-01-01"),
            ("until", "2020-01-01"),
            ("set", "source:x:a:b"),
        ])
        .expect("valid");
        assert_eq!(
            ok.echo().len(),
            5,
            "verb, prefix, from, until and set are echoed"
        );
    }
}
