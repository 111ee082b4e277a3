//! The OAI-PMH 2.0 error codes (specification, section 3.6), spoken by
//! both sides of Sheaf: the harvester reads them from providers, the
//! endpoint writes them for its own harvesters.

use std::fmt;

/// An OAI-PMH error code.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OaiErrorCode {
    BadArgument,
    BadResumptionToken,
    BadVerb,
    CannotDisseminateFormat,
    IdDoesNotExist,
    NoRecordsMatch,
    NoMetadataFormats,
    NoSetHierarchy,
    /// A code outside the protocol (or empty), as a provider sent it.
    Other(String),
}

impl OaiErrorCode {
    /// The protocol codes with their spelling in `<error code="…">`.
    const KNOWN: [(&'static str, OaiErrorCode); 8] = [
        ("badArgument", Self::BadArgument),
        ("badResumptionToken", Self::BadResumptionToken),
        ("badVerb", Self::BadVerb),
        ("cannotDisseminateFormat", Self::CannotDisseminateFormat),
        ("idDoesNotExist", Self::IdDoesNotExist),
        ("noRecordsMatch", Self::NoRecordsMatch),
        ("noMetadataFormats", Self::NoMetadataFormats),
        ("noSetHierarchy", Self::NoSetHierarchy),
    ];

    /// Reads a `code` attribute; surrounding white space is ignored and an
    /// unknown code is kept as [`OaiErrorCode::Other`].
    pub fn parse(code: &str) -> Self {
        let code = code.trim();
        Self::KNOWN
            .iter()
            .find(|(name, _)| *name == code)
            .map_or_else(|| Self::Other(code.to_owned()), |(_, c)| c.clone())
    }

    /// The protocol spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Other(s) => s,
            known => Self::KNOWN
                .iter()
                .find(|(_, c)| c == known)
                .map_or("", |(name, _)| name),
        }
    }

    /// Whether the request itself was malformed, in which case a response's
    /// `<request>` element must carry no attributes (specification 3.2).
    pub fn hides_arguments(&self) -> bool {
        matches!(self, Self::BadArgument | Self::BadVerb)
    }
}

impl fmt::Display for OaiErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::OaiErrorCode;

    #[test]
    fn every_protocol_code_round_trips() {
        for (name, code) in OaiErrorCode::KNOWN {
            assert_eq!(OaiErrorCode::parse(name), code);
            assert_eq!(code.as_str(), name);
        }
    }

    #[test]
    fn unknown_and_padded_codes() {
        assert_eq!(
            OaiErrorCode::parse(" noRecordsMatch\n"),
            OaiErrorCode::NoRecordsMatch
        );
        let other = OaiErrorCode::parse("undefinedError");
        assert_eq!(other, OaiErrorCode::Other("undefinedError".into()));
        assert_eq!(other.to_string(), "undefinedError");
        assert!(OaiErrorCode::BadVerb.hides_arguments());
        assert!(!OaiErrorCode::IdDoesNotExist.hides_arguments());
    }
}
