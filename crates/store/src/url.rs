//! Database URLs: which backend, and how to print one without its password.

use std::fmt;

/// The two supported databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// A short name for logs and `/health`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A database URL whose backend is known and whose `Display` and `Debug`
/// mask the password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    raw: String,
    backend: Backend,
}

impl DatabaseUrl {
    /// Accepts `sqlite:`, `sqlite://`, `postgres://` and `postgresql://` URLs.
    pub fn parse(raw: &str) -> Result<Self, crate::StoreError> {
        let backend = if raw.starts_with("sqlite:") {
            Backend::Sqlite
        } else if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(crate::StoreError::Config(format!(
                "database URL {} must start with sqlite: or postgres://",
                mask(raw)
            )));
        };
        Ok(Self {
            raw: raw.to_owned(),
            backend,
        })
    }

    /// The backend the scheme names.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL with its password: only for handing to the driver.
    pub fn expose(&self) -> &str {
        &self.raw
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask(&self.raw))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", mask(&self.raw))
    }
}

/// Replaces the password of a URL (`user:secret@host`) and any `password=`
/// query parameter with `***`.
pub fn mask(raw: &str) -> String {
    match ::url::Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            let pairs: Vec<(String, String)> = u
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k.eq_ignore_ascii_case("password") {
                        "***".to_owned()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            if !pairs.is_empty() {
                u.query_pairs_mut().clear().extend_pairs(pairs);
            }
            u.to_string()
        }
        // Not a URL we can take apart: show only the scheme.
        Err(_) => match raw.split_once(':') {
            Some((scheme, _)) => format!("{scheme}:***"),
            None => "***".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_passwords() {
        let u =
            DatabaseUrl::parse("postgres://sheaf:s3cret@db:5432/sheaf?password=x").expect("valid");
        let shown = u.to_string();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(!shown.contains("=x"), "{shown}");
        assert!(shown.contains("sheaf:***@db"), "{shown}");
        assert!(!format!("{u:?}").contains("s3cret"));
        assert_eq!(u.backend(), Backend::Postgres);
        assert_eq!(
            u.expose(),
            "postgres://sheaf:s3cret@db:5432/sheaf?password=x"
        );
    }

    #[test]
    fn picks_backend_from_scheme() {
        assert_eq!(
            DatabaseUrl::parse("sqlite:data/sheaf.db")
                .expect("ok")
                .backend(),
            Backend::Sqlite
        );
        let err = DatabaseUrl::parse("mysql://root:pw@h/db").expect_err("unsupported");
        assert!(!err.to_string().contains("pw@"), "{err}");
    }
}
