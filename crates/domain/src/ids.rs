//! Identifier newtypes with `parse` constructors: an invalid id cannot exist.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} is longer than {max} characters")]
    TooLong { kind: &'static str, max: usize },
    #[error("{kind} contains {found:?}; allowed are letters, digits and {allowed}")]
    BadChar {
        kind: &'static str,
        found: char,
        allowed: &'static str,
    },
}

fn check(kind: &'static str, s: &str, max: usize, allowed: &'static str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if s.chars().count() > max {
        return Err(IdError::TooLong { kind, max });
    }
    match s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || allowed.contains(*c)))
    {
        Some(found) => Err(IdError::BadChar {
            kind,
            found,
            allowed,
        }),
        None => Ok(()),
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:literal, $allowed:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates `s` and wraps it.
            pub fn parse(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                check($kind, &s, $max, $allowed)?;
                Ok(Self(s))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// A record's stable id. Harvested records get ids derived from their
    /// source and OAI identifier, so the characters of OAI identifiers are
    /// allowed.
    RecordId, "record id", 512, "-_.:~/+%@=,;!$*'()"
);
id_type!(
    /// A schema's id (`schemaId` in the MetaStore API), also used as a URL
    /// path segment.
    SchemaId, "schema id", 128, "-_."
);
id_type!(
    /// A harvest source's id: the stem of its `harvest-configs/<id>.toml`.
    SourceId, "source id", 128, "-_."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_oai_identifier_shapes() {
        assert!(RecordId::parse("src:oai:arXiv.org:cs/0112017").is_ok());
        assert!(RecordId::parse("a%20b").is_ok());
    }

    #[test]
    fn rejects_empty_and_odd_characters() {
        assert_eq!(
            SchemaId::parse(""),
            Err(IdError::Empty { kind: "schema id" })
        );
        assert!(matches!(
            SchemaId::parse("a/b"),
            Err(IdError::BadChar { found: '/', .. })
        ));
        assert!(matches!(
            RecordId::parse("a b"),
            Err(IdError::BadChar { found: ' ', .. })
        ));
        assert!(matches!(
            SourceId::parse("x".repeat(129)),
            Err(IdError::TooLong { .. })
        ));
    }

    #[test]
    fn serde_round_trip_validates() {
        let id: SchemaId = serde_json::from_str("\"my_first_xsd\"").expect("valid id");
        assert_eq!(id.as_str(), "my_first_xsd");
        assert!(serde_json::from_str::<SchemaId>("\"bad id\"").is_err());
    }
}
