//! Content hashes and ETags.
//!
//! A version's content hash covers everything that makes it a new version:
//! the document bytes, the schema link, the resource links and the record
//! fields. Provenance (harvest time and the like) is deliberately left out,
//! so an unchanged re-harvest hashes the same and writes nothing.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A SHA-256 digest, hex encoded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContentHash(String);

impl ContentHash {
    /// Hashes the parts in order, each length-prefixed so that moving bytes
    /// from one part to the next changes the hash.
    pub fn of_parts<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut h = Sha256::new();
        for p in parts {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p);
        }
        Self(hex::encode(h.finalize()))
    }

    /// Wraps a hash read back from storage.
    pub fn from_stored(hex: String) -> Self {
        Self(hex)
    }

    /// The hex digest.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The strong ETag (with quotes) of one version of a record or schema:
/// derived from its id, version and content, so an ETag from an old version
/// never matches the current one.
pub fn etag(id: &str, version: i64, content: &ContentHash) -> String {
    let h = ContentHash::of_parts([
        id.as_bytes(),
        version.to_string().as_bytes(),
        content.as_str().as_bytes(),
    ]);
    format!("\"{}\"", &h.as_str()[..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_length_prefixed() {
        let a = ContentHash::of_parts([b"ab".as_slice(), b"c".as_slice()]);
        let b = ContentHash::of_parts([b"a".as_slice(), b"bc".as_slice()]);
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 64);
    }

    #[test]
    fn etag_changes_with_id_version_and_content() {
        let c1 = ContentHash::of_parts([b"x".as_slice()]);
        let c2 = ContentHash::of_parts([b"y".as_slice()]);
        let e = etag("r", 1, &c1);
        assert!(e.starts_with('"') && e.ends_with('"'));
        assert_eq!(e, etag("r", 1, &c1));
        assert_ne!(e, etag("r", 2, &c1));
        assert_ne!(e, etag("s", 1, &c1));
        assert_ne!(e, etag("r", 1, &c2));
    }
}
