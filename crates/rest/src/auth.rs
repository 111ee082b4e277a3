//! Who is calling, and what the record ACLs let them do.
//!
//! Without configured tokens Sheaf runs in MetaStore's anonymous
//! single-user mode: every caller is `SELF` and may do everything. With
//! tokens, a `Bearer` token names a subject (the ACL `sid`); writes need
//! one, reads without one see only what is public.
//!
//! Read rules: a record is readable by a subject holding at least `READ` on
//! its ACL, by everyone when the ACL grants [`PUBLIC_SID`] `READ`, and by
//! everyone when it has no ACL at all (harvested records: public upstream).
//! Depends on the domain's ACL types and the error type only.

use std::collections::HashMap;

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};
use sheaf_domain::model::{AclEntry, Permission};

use crate::ApiToken;
use crate::error::ApiError;

/// The subject of every caller in anonymous single-user mode, as MetaStore.
pub(crate) const SELF_SID: &str = "SELF";

/// An ACL subject meaning "anyone, with or without a token".
pub(crate) const PUBLIC_SID: &str = "anonymousUser";

/// The configured tokens, kept only as digests so that a lookup's timing
/// says nothing about how much of a guessed token was right.
#[derive(Clone, Default)]
pub(crate) struct TokenTable {
    by_digest: HashMap<[u8; 32], String>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl TokenTable {
    pub(crate) fn new(tokens: &[ApiToken]) -> Self {
        Self {
            by_digest: tokens
                .iter()
                .map(|t| (digest(&t.token), t.subject.clone()))
                .collect(),
        }
    }

    /// Works out the caller from the `Authorization` header.
    pub(crate) fn caller(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        if self.by_digest.is_empty() {
            return Ok(Caller::SingleUser);
        }
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(Caller::Guest);
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::Unauthorized("expected 'Authorization: Bearer <token>'".into())
            })?;
        self.by_digest
            .get(&digest(token))
            .map(|s| Caller::User(s.clone()))
            .ok_or_else(|| ApiError::Unauthorized("unknown token".into()))
    }
}

/// The caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    /// No tokens configured: the reference's anonymous single-user mode.
    SingleUser,
    /// Tokens configured, none sent.
    Guest,
    /// A valid token's subject.
    User(String),
}

impl Caller {
    /// The subject written into ACLs, `creators` and `publisher`.
    pub(crate) fn sid(&self) -> Option<&str> {
        match self {
            Caller::SingleUser => Some(SELF_SID),
            Caller::Guest => None,
            Caller::User(s) => Some(s),
        }
    }

    /// The subject of a write; guests may not write.
    pub(crate) fn writer(&self) -> Result<&str, ApiError> {
        self.sid().ok_or_else(|| {
            ApiError::Unauthorized("writing needs 'Authorization: Bearer <token>'".into())
        })
    }

    /// The subjects a store list must find on a record's ACL; `None` when
    /// everything is visible.
    pub(crate) fn readable_by(&self) -> Option<Vec<String>> {
        match self {
            Caller::SingleUser => None,
            Caller::Guest => Some(vec![PUBLIC_SID.to_owned()]),
            Caller::User(s) => Some(vec![s.clone(), PUBLIC_SID.to_owned()]),
        }
    }

    /// Whether this caller holds `wanted` on `acl`.
    pub(crate) fn may(&self, acl: &[AclEntry], wanted: Permission) -> bool {
        match self {
            Caller::SingleUser => true,
            _ if wanted == Permission::Read && acl.is_empty() => true,
            caller => acl.iter().any(|e| {
                e.permission.grants(wanted)
                    && (Some(e.sid.as_str()) == caller.sid()
                        || (wanted == Permission::Read && e.sid == PUBLIC_SID))
            }),
        }
    }

    /// Fails unless this caller holds `wanted` on `acl` (401 for guests,
    /// 403 for subjects lacking the permission).
    pub(crate) fn require(
        &self,
        acl: &[AclEntry],
        wanted: Permission,
        what: &str,
    ) -> Result<(), ApiError> {
        if self.may(acl, wanted) {
            return Ok(());
        }
        match self {
            Caller::Guest => Err(ApiError::Unauthorized(format!(
                "{what} needs 'Authorization: Bearer <token>'"
            ))),
            _ => Err(ApiError::Forbidden(format!(
                "{what} needs {} permission",
                wanted.as_str()
            ))),
        }
    }
}

/// Gives `sid` ADMINISTRATE: the creator of a record always administers it.
pub(crate) fn grant_administrate(acl: &mut Vec<AclEntry>, sid: &str) {
    match acl.iter_mut().find(|e| e.sid == sid) {
        Some(e) => e.permission = Permission::Administrate,
        None => acl.push(AclEntry {
            sid: sid.to_owned(),
            permission: Permission::Administrate,
        }),
    }
}

/// Makes sure `sid` holds ADMINISTRATE when nobody else does, so that an
/// update can never lock a record against every subject.
pub(crate) fn keep_administrator(acl: &mut Vec<AclEntry>, sid: &str) {
    if !acl.iter().any(|e| e.permission == Permission::Administrate) {
        grant_administrate(acl, sid);
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn entry(sid: &str, p: Permission) -> AclEntry {
        AclEntry {
            sid: sid.into(),
            permission: p,
        }
    }

    fn table() -> TokenTable {
        TokenTable::new(&[ApiToken {
            subject: "alice".into(),
            token: "s3cret".into(),
        }])
    }

    #[test]
    fn without_tokens_everyone_is_self() {
        let t = TokenTable::default();
        assert_eq!(t.caller(&HeaderMap::new()).ok(), Some(Caller::SingleUser));
    }

    #[test]
    fn bearer_token_names_the_subject() {
        let mut h = HeaderMap::new();
        assert_eq!(table().caller(&h).ok(), Some(Caller::Guest));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert_eq!(table().caller(&h).ok(), Some(Caller::User("alice".into())));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer nope"),
        );
        assert!(matches!(table().caller(&h), Err(ApiError::Unauthorized(_))));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert!(matches!(table().caller(&h), Err(ApiError::Unauthorized(_))));
    }

    #[test]
    fn acl_rules() {
        let alice = Caller::User("alice".into());
        let bob = Caller::User("bob".into());
        let acl = vec![
            entry("alice", Permission::Administrate),
            entry("bob", Permission::Read),
        ];
        assert!(alice.may(&acl, Permission::Write));
        assert!(bob.may(&acl, Permission::Read));
        assert!(!bob.may(&acl, Permission::Write));
        assert!(!Caller::Guest.may(&acl, Permission::Read));
        let public = vec![entry(PUBLIC_SID, Permission::Read)];
        assert!(Caller::Guest.may(&public, Permission::Read));
        assert!(!Caller::Guest.may(&public, Permission::Write));
        assert!(bob.may(&[], Permission::Read));
        assert!(!bob.may(&[], Permission::Write));
        assert!(matches!(
            bob.require(&acl, Permission::Write, "updating"),
            Err(ApiError::Forbidden(_))
        ));
        assert!(matches!(
            Caller::Guest.require(&acl, Permission::Read, "reading"),
            Err(ApiError::Unauthorized(_))
        ));
    }

    #[test]
    fn an_acl_keeps_an_administrator() {
        let mut acl = vec![entry("guest", Permission::Read)];
        keep_administrator(&mut acl, "SELF");
        assert_eq!(acl[1], entry("SELF", Permission::Administrate));
        let mut acl = vec![entry("SELF", Permission::Read)];
        keep_administrator(&mut acl, "SELF");
        assert_eq!(acl, vec![entry("SELF", Permission::Administrate)]);
    }
}
