//! OAI-PMH protocol errors (rendered as `<error code=…>` in a 200 response)
//! and internal failures (rendered as 503, so harvesters retry).
//!
//! Depends on `sheaf-store` for its error type only.

/// The error codes of OAI-PMH 2.0, section 3.6; Sheaf's endpoint never
/// sends [`Code::Other`].
pub(crate) use sheaf_domain::OaiErrorCode as Code;

/// A protocol error: the request cannot be answered as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub(crate) struct OaiError {
    pub code: Code,
    pub message: String,
}

impl OaiError {
    pub(crate) fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Why a response could not be produced at all.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// A protocol error, answered in OAI-PMH XML.
    #[error(transparent)]
    Protocol(#[from] OaiError),
    /// The store failed; the client gets a 503 and safe text.
    #[error("store: {0}")]
    Store(#[from] sheaf_store::StoreError),
    /// Writing the XML failed (it writes to memory, so this is a bug).
    #[error("render: {0}")]
    Render(#[from] std::io::Error),
}

/// Shorthand for protocol errors.
pub(crate) fn err<T>(code: Code, message: impl Into<String>) -> Result<T, Failure> {
    Err(Failure::Protocol(OaiError::new(code, message)))
}
