//! Diagnostics a person can act on: the validator's text with the line and
//! column it points at, and the crate's synchronous error type.
//!
//! Depends on nothing but std and libxml's error struct (converted here so
//! no other module formats libxml errors).

use std::fmt;

/// One problem found in a document or schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line, when the validator knows it.
    pub line: Option<u32>,
    /// 1-based column, when the validator knows it.
    pub column: Option<u32>,
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic without a position.
    pub fn new(message: impl Into<String>) -> Self {
        Diagnostic {
            line: None,
            column: None,
            message: message.into(),
        }
    }

    /// A diagnostic at a position.
    pub fn at(line: Option<u32>, column: Option<u32>, message: impl Into<String>) -> Self {
        Diagnostic {
            line,
            column,
            message: message.into(),
        }
    }

    pub(crate) fn from_libxml(e: &libxml::error::StructuredError) -> Self {
        let message = e
            .message
            .as_deref()
            .unwrap_or("unspecified libxml2 error")
            .trim_end()
            .to_owned();
        let pos = |v: Option<i32>| v.and_then(|n| u32::try_from(n).ok()).filter(|n| *n > 0);
        Diagnostic::at(pos(e.line), pos(e.col), message)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "line {l}, column {c}: {}", self.message),
            (Some(l), None) => write!(f, "line {l}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

/// Every problem found in one document, in the order reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationReport {
    pub diagnostics: Vec<Diagnostic>,
}

impl ValidationReport {
    /// A report of a single diagnostic.
    pub fn single(d: Diagnostic) -> Self {
        ValidationReport {
            diagnostics: vec![d],
        }
    }

    /// A report of a single message without position.
    pub fn message(message: impl Into<String>) -> Self {
        Self::single(Diagnostic::new(message))
    }

    pub(crate) fn from_libxml(errors: &[libxml::error::StructuredError]) -> Self {
        let mut diagnostics: Vec<Diagnostic> = Vec::with_capacity(errors.len());
        for d in errors.iter().map(Diagnostic::from_libxml) {
            // libxml2 sometimes reports the same fault twice (parser + SAX).
            if !diagnostics.contains(&d) {
                diagnostics.push(d);
            }
        }
        if diagnostics.is_empty() {
            diagnostics.push(Diagnostic::new("rejected by libxml2 without a message"));
        }
        ValidationReport { diagnostics }
    }
}

impl fmt::Display for ValidationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Why a synchronous validation (no registry involved) failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ValidationError {
    /// The document is not valid (or not well-formed, or has a DTD).
    #[error("{0}")]
    Invalid(ValidationReport),
    /// The schema itself does not compile.
    #[error("schema does not compile:\n{0}")]
    DoesNotCompile(ValidationReport),
    /// The document is larger than the configured limit; it was not parsed.
    #[error("document is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { limit: usize, size: usize },
    /// No schema of that name is bundled.
    #[error("no bundled schema named {0:?}")]
    UnknownBundled(String),
}
