//! Stateless resumption tokens: the list's request and its keyset cursor,
//! signed with HMAC-SHA256 and base64url-encoded.
//!
//! A token carries everything the next page needs (selection, snapshot
//! horizon, last sequence served, cursor, list size, expiry), so any
//! process holding the key answers it: across restarts and replicas.
//! Depends on nothing of ours.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Code, OaiError};

/// The format version, first byte of every token.
const VERSION: u8 = 1;
/// Bytes of the HMAC kept: 128 bits are plenty against forgery.
const TAG_LEN: usize = 16;
/// Longest token accepted, before any decoding work.
const MAX_TOKEN_LEN: usize = 4096;

/// Which list a token continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ListKind {
    #[serde(rename = "r")]
    Records,
    #[serde(rename = "i")]
    Identifiers,
    #[serde(rename = "s")]
    Sets,
}

/// What a token remembers of its list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TokenState {
    #[serde(rename = "k")]
    pub kind: ListKind,
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub set: Option<String>,
    #[serde(rename = "f", default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// The snapshot: the change sequence the list was started at.
    #[serde(rename = "h")]
    pub horizon_seq: i64,
    /// The store's change clock at that point, in microseconds.
    #[serde(rename = "t")]
    pub horizon_at: i64,
    /// Keyset cursor: the last change sequence served.
    #[serde(rename = "a")]
    pub after_seq: i64,
    /// Keyset cursor of set lists: the last setSpec served.
    #[serde(rename = "l", default, skip_serializing_if = "Option::is_none")]
    pub after_set: Option<String>,
    /// Items served before the next page.
    #[serde(rename = "c")]
    pub cursor: u64,
    /// The complete list size, counted once when the list started.
    #[serde(rename = "n")]
    pub size: u64,
    /// Expiry, seconds since the epoch.
    #[serde(rename = "e")]
    pub expires: i64,
}

/// The signing key.
#[derive(Clone)]
pub(crate) struct TokenKey([u8; 32]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// A key from configured secret text (hashed, so any length works).
    pub(crate) fn from_secret(secret: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"sheaf oai resumption token key\0");
        h.update(secret.as_bytes());
        Self(h.finalize().into())
    }

    /// A key from stored random bytes.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(b"sheaf oai resumption token key\0");
        h.update(bytes);
        Self(h.finalize().into())
    }

    fn mac(&self, data: &[u8]) -> Hmac<Sha256> {
        // HMAC takes keys of any length; a 32-byte key cannot be rejected.
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
        m.update(data);
        m
    }

    /// Encodes and signs a token.
    pub(crate) fn seal(&self, state: &TokenState) -> String {
        let mut data = vec![VERSION];
        // Serialising a plain struct of strings and integers cannot fail.
        data.extend(serde_json::to_vec(state).unwrap_or_default());
        let tag = self.mac(&data).finalize().into_bytes();
        data.extend_from_slice(&tag[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(data)
    }

    /// Checks and decodes a token; any defect is `badResumptionToken`.
    pub(crate) fn open(&self, token: &str, now_secs: i64) -> Result<TokenState, OaiError> {
        let bad = |why: &str| OaiError::new(Code::BadResumptionToken, why.to_owned());
        if token.len() > MAX_TOKEN_LEN {
            return Err(bad(
                "the resumption token is not one this repository issued",
            ));
        }
        let data = URL_SAFE_NO_PAD
            .decode(token.as_bytes())
            .map_err(|_| bad("the resumption token is not one this repository issued"))?;
        if data.len() <= TAG_LEN + 1 {
            return Err(bad(
                "the resumption token is not one this repository issued",
            ));
        }
        let (body, tag) = data.split_at(data.len() - TAG_LEN);
        self.mac(body)
            .verify_truncated_left(tag)
            .map_err(|_| bad("the resumption token is not one this repository issued"))?;
        if body[0] != VERSION {
            return Err(bad(
                "the resumption token is from another version of this repository",
            ));
        }
        let state: TokenState = serde_json::from_slice(&body[1..])
            .map_err(|_| bad("the resumption token is not one this repository issued"))?;
        if now_secs >= state.expires {
            return Err(bad(
                "the resumption token has expired; start the list again",
            ));
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> TokenState {
        TokenState {
            kind: ListKind::Records,
            prefix: Some("oai_dc".into()),
            set: None,
            from: Some("2020-01-01".into()),
            until: None,
            horizon_seq: 42,
            horizon_at: 1_700_000_000_000_000,
            after_seq: 7,
            after_set: None,
            cursor: 500,
            size: 1234,
            expires: 2_000_000_000,
        }
    }

    #[test]
    fn round_trip() {
        let k = TokenKey::from_secret("s");
        let t = k.seal(&state());
        assert!(
            t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(k.open(&t, 1_900_000_000), Ok(state()));
    }

    #[test]
    fn rejects_tampering_other_keys_and_expiry() {
        let k = TokenKey::from_secret("s");
        let t = k.seal(&state());
        let code = |r: Result<TokenState, OaiError>| r.expect_err("rejected").code;
        assert_eq!(
            code(TokenKey::from_secret("other").open(&t, 0)),
            Code::BadResumptionToken
        );
        let mut bytes = URL_SAFE_NO_PAD.decode(&t).expect("b64");
        bytes[5] ^= 1;
        assert_eq!(
            code(k.open(&URL_SAFE_NO_PAD.encode(bytes), 0)),
            Code::BadResumptionToken
        );
        assert_eq!(code(k.open("garbage!", 0)), Code::BadResumptionToken);
        assert_eq!(code(k.open("", 0)), Code::BadResumptionToken);
        assert_eq!(code(k.open(&t, 2_000_000_000)), Code::BadResumptionToken);
    }
}
