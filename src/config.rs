//! Layered configuration: defaults → TOML file → `SHEAF_*` environment →
//! command-line flags. Every layer is validated once, at load; secrets never
//! appear in `Debug` output or errors.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;
use sheaf_store::DatabaseUrl;

/// The default database: an SQLite file under the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite:data/sheaf.db";
/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8040";
/// The config file read when `--config` is not given and it exists.
pub const DEFAULT_CONFIG_FILE: &str = "sheaf.toml";

/// The file layer: every field optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    database_url: Option<String>,
    listen: Option<String>,
    harvest_configs: Option<PathBuf>,
    #[serde(default)]
    validation: ValidationSection,
    #[serde(default)]
    rest: sheaf_rest::RestConfig,
    #[serde(default)]
    oai: sheaf_oai::OaiConfig,
    #[serde(default)]
    daemon: DaemonSection,
}

/// `[daemon]`: how the scheduler runs harvests.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonSection {
    /// Harvest runs in flight at once, over all sources.
    pub max_concurrent: usize,
    /// Seconds a source's lease lasts without renewal; a crashed daemon's
    /// sources are taken over by another after it.
    pub lease_ttl_secs: u64,
}

impl Default for DaemonSection {
    fn default() -> Self {
        DaemonSection {
            max_concurrent: 4,
            lease_ttl_secs: 60,
        }
    }
}

/// `[validation]`: limits applied to every document before parsing.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ValidationSection {
    max_document_bytes: Option<usize>,
}

/// Values given on the command line (the last layer).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub database_url: Option<String>,
    pub listen: Option<String>,
    pub harvest_configs: Option<PathBuf>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the store lives; `Display`/`Debug` mask its password.
    pub database_url: DatabaseUrl,
    pub listen: SocketAddr,
    /// The directory of `<source>.toml` harvest configs.
    pub harvest_configs: PathBuf,
    /// Limits for validation (document size).
    pub validation: sheaf_validate::Limits,
    /// `[rest]`: the MetaStore-compatible REST face.
    pub rest: sheaf_rest::RestConfig,
    /// `[oai]`: the OAI-PMH endpoint.
    pub oai: sheaf_oai::OaiConfig,
    /// `[daemon]`: the harvest scheduler.
    pub daemon: DaemonSection,
    /// The file the config was read from, if any.
    pub file: Option<PathBuf>,
}

impl Config {
    /// Resolves the layers from the process environment.
    pub fn load(overrides: &Overrides) -> anyhow::Result<Config> {
        Self::load_with(overrides, |k| std::env::var(k).ok())
    }

    /// Resolves the layers with `env` as the environment (for tests).
    pub fn load_with(
        overrides: &Overrides,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Config> {
        let explicit = overrides
            .config_file
            .clone()
            .or_else(|| env("SHEAF_CONFIG").map(PathBuf::from));
        let (file, file_cfg) = match explicit {
            Some(path) => {
                let cfg = read_file(&path)?;
                (Some(path), cfg)
            }
            None if Path::new(DEFAULT_CONFIG_FILE).is_file() => {
                let path = PathBuf::from(DEFAULT_CONFIG_FILE);
                let cfg = read_file(&path)?;
                (Some(path), cfg)
            }
            None => (None, FileConfig::default()),
        };

        let pick = |flag: &Option<String>, var: &str, file: &Option<String>, default: &str| {
            flag.clone()
                .or_else(|| env(var))
                .or_else(|| file.clone())
                .unwrap_or_else(|| default.to_owned())
        };
        let db = pick(
            &overrides.database_url,
            "SHEAF_DATABASE_URL",
            &file_cfg.database_url,
            DEFAULT_DATABASE_URL,
        );
        let database_url = DatabaseUrl::parse(&db).map_err(|e| anyhow::anyhow!("{e}"))?;
        let listen_raw = pick(
            &overrides.listen,
            "SHEAF_LISTEN",
            &file_cfg.listen,
            DEFAULT_LISTEN,
        );
        let listen = listen_raw
            .parse()
            .with_context(|| format!("listen address {listen_raw:?} is not host:port"))?;
        let harvest_configs = overrides
            .harvest_configs
            .clone()
            .or_else(|| env("SHEAF_HARVEST_CONFIGS").map(PathBuf::from))
            .or(file_cfg.harvest_configs)
            .unwrap_or_else(|| PathBuf::from("harvest-configs"));
        if database_url.expose().trim().is_empty() {
            bail!("database URL is empty");
        }
        if let Err(e) = file_cfg.oai.check() {
            bail!("[oai] {}", e.0);
        }
        if file_cfg.daemon.max_concurrent == 0 || file_cfg.daemon.lease_ttl_secs == 0 {
            bail!("[daemon] max_concurrent and lease_ttl_secs must be at least 1");
        }
        let mut validation = sheaf_validate::Limits::default();
        if let Some(max) = file_cfg.validation.max_document_bytes {
            validation.max_document_bytes = max;
        }
        Ok(Config {
            database_url,
            listen,
            harvest_configs,
            validation,
            rest: file_cfg.rest,
            oai: file_cfg.oai,
            daemon: file_cfg.daemon,
            file,
        })
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn defaults_apply() {
        let c = Config::load_with(&Overrides::default(), env(&[])).expect("defaults");
        assert_eq!(c.database_url.expose(), DEFAULT_DATABASE_URL);
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.harvest_configs, PathBuf::from("harvest-configs"));
    }

    #[test]
    fn layers_override_in_order() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("sheaf.toml");
        std::fs::write(
            &file,
            "database_url = \"sqlite:file.db\"\nlisten = \"127.0.0.1:1\"\nharvest_configs = \"hc\"\n",
        )
        .expect("write");
        let mut o = Overrides {
            config_file: Some(file),
            ..Default::default()
        };
        let c = Config::load_with(&o, env(&[])).expect("file");
        assert_eq!(c.database_url.expose(), "sqlite:file.db");
        assert_eq!(c.listen.port(), 1);
        let e = env(&[
            ("SHEAF_DATABASE_URL", "sqlite:env.db"),
            ("SHEAF_LISTEN", "127.0.0.1:2"),
        ]);
        let c = Config::load_with(&o, &e).expect("env");
        assert_eq!(c.database_url.expose(), "sqlite:env.db");
        assert_eq!(c.listen.port(), 2);
        assert_eq!(c.harvest_configs, PathBuf::from("hc"));
        o.database_url = Some("sqlite:flag.db".into());
        o.listen = Some("127.0.0.1:3".into());
        let c = Config::load_with(&o, &e).expect("flags");
        assert_eq!(c.database_url.expose(), "sqlite:flag.db");
        assert_eq!(c.listen.port(), 3);
    }

    #[test]
    fn bad_values_name_themselves_and_hide_passwords() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "databse_url = \"x\"\n").expect("write");
        let o = Overrides {
            config_file: Some(file.clone()),
            ..Default::default()
        };
        let err = Config::load_with(&o, env(&[]))
            .expect_err("unknown key")
            .to_string();
        assert!(err.contains("databse_url"), "{err}");

        let err = Config::load_with(
            &Overrides::default(),
            env(&[("SHEAF_DATABASE_URL", "mysql://u:hunter2@h/db")]),
        )
        .expect_err("unsupported")
        .to_string();
        assert!(!err.contains("hunter2"), "{err}");

        let c = Config::load_with(
            &Overrides::default(),
            env(&[("SHEAF_DATABASE_URL", "postgres://u:hunter2@h/db")]),
        )
        .expect("pg");
        assert!(!format!("{c:?}").contains("hunter2"));

        let err = Config::load_with(&Overrides::default(), env(&[("SHEAF_LISTEN", "nope")]))
            .expect_err("listen")
            .to_string();
        assert!(err.contains("nope"), "{err}");

        std::fs::write(&file, "[oai]\nrepository_identifier = \"not a domain\"\n").expect("write");
        let o = Overrides {
            config_file: Some(file.clone()),
            ..Default::default()
        };
        let err = Config::load_with(&o, env(&[]))
            .expect_err("bad oai")
            .to_string();
        assert!(
            err.contains("[oai]") && err.contains("repository_identifier"),
            "{err}"
        );

        let missing = Overrides {
            config_file: Some(dir.path().join("absent.toml")),
            ..Default::default()
        };
        assert!(Config::load_with(&missing, env(&[])).is_err());
    }
}
