//! The command line: one binary, `sheaf`, with subcommands. A subcommand
//! that is not built yet says so and exits non-zero; it never pretends.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, Overrides};
use crate::startup::{App, open_store, shutdown_signal};

/// Sheaf: harvest OAI-PMH providers, validate and version their records,
/// republish them over OAI-PMH and REST.
#[derive(Debug, Parser)]
#[command(name = "sheaf", version, about)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct GlobalArgs {
    /// Config file (default: sheaf.toml in the working directory, if present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Database URL: sqlite:PATH or postgres://USER@HOST/DB.
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    /// Listen address, host:port.
    #[arg(long, global = true, value_name = "ADDR")]
    listen: Option<String>,
    /// Directory of harvest source configs.
    #[arg(long, global = true, value_name = "DIR")]
    harvest_configs: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the scheduler and the HTTP server (the production job).
    Daemon,
    /// Run the HTTP server only.
    Serve,
    /// Harvest one source now.
    Harvest {
        /// The source id (the stem of its harvest-configs/<id>.toml).
        source: String,
        /// Harvest from this datestamp instead of the last successful run's.
        #[arg(long)]
        from: Option<String>,
        /// Harvest until this datestamp.
        #[arg(long)]
        until: Option<String>,
        /// Ignore previous runs and harvest everything.
        #[arg(long)]
        full: bool,
    },
    /// List recent harvest runs.
    Runs {
        /// Only runs of this source.
        source: Option<String>,
    },
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage registered schemas.
    Schemas {
        #[command(subcommand)]
        command: SchemasCommand,
    },
    /// Validate documents against a registered schema: exit 0 when all are
    /// valid, 1 when any is invalid, 2 on usage errors.
    Validate {
        /// schemaId or schemaId@version.
        schema: String,
        /// The documents to validate.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum SchemasCommand {
    /// Register a schema document (XSD or JSON Schema) as a new version.
    Add {
        /// The schemaId.
        id: String,
        /// The schema document.
        file: PathBuf,
        /// The OAI metadataPrefix (default: the schemaId).
        #[arg(long)]
        prefix: Option<String>,
    },
    /// List registered schemas with their current versions.
    List,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate the config file and every harvest source config.
    Check,
}

/// Parses arguments, runs the command, maps failure to one clear line on
/// stderr and exit code 1 (no backtrace).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match sheaf_harvest::run::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sheaf: error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sheaf: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    // Colour only on a terminal: under systemd the journal gets plain text.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let overrides = Overrides {
        config_file: cli.global.config,
        database_url: cli.global.database_url,
        listen: cli.global.listen,
        harvest_configs: cli.global.harvest_configs,
    };
    let config = Config::load(&overrides)?;
    match cli.command {
        Command::Daemon => serve(&config, true).await,
        Command::Serve => serve(&config, false).await,
        Command::Migrate => {
            open_store(&config).await?;
            println!("database {} is migrated", config.database_url);
            Ok(ExitCode::SUCCESS)
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => Ok(config_check(&config)),
        Command::Schemas { command } => {
            let registry = registry(&config).await?;
            let code = match command {
                SchemasCommand::Add { id, file, prefix } => {
                    sheaf_validate::cli::schemas_add(&registry, &id, &file, prefix).await
                }
                SchemasCommand::List => sheaf_validate::cli::schemas_list(&registry).await,
            };
            Ok(exit(code))
        }
        Command::Validate { schema, files } => {
            let registry = registry(&config).await?;
            Ok(exit(
                sheaf_validate::cli::validate_files(&registry, &schema, &files).await,
            ))
        }
        Command::Harvest {
            source,
            from,
            until,
            full,
        } => {
            let path = config.harvest_configs.join(format!("{source}.toml"));
            if !path.is_file() {
                anyhow::bail!("no source {source:?}: {} does not exist", path.display());
            }
            let source = sheaf_harvest::load_file(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
            let registry = registry(&config).await?;
            Ok(exit(
                sheaf_harvest::cli::harvest(&registry, &source, from, until, full).await,
            ))
        }
        Command::Runs { source } => {
            let store = open_store(&config).await?;
            Ok(exit(
                sheaf_harvest::cli::runs(&store, source.as_deref()).await,
            ))
        }
    }
}

/// `sheaf config check`: the config file (already loaded) and every
/// harvest config, each problem named by file and field.
fn config_check(config: &Config) -> ExitCode {
    // The [oai] values were checked at load; this also compiles its
    // crosswalk stylesheets.
    let oai = sheaf_oai::check_config(&config.oai);
    if let Err(e) = &oai {
        eprintln!("{e}");
    }
    let (valid, errors) = sheaf_harvest::check_dir(&config.harvest_configs);
    for e in &errors {
        eprintln!("{e}");
    }
    println!(
        "config {}: database {}, listen {}; {} harvest source(s) valid, {} invalid in {}",
        config
            .file
            .as_ref()
            .map_or("defaults".to_owned(), |f| f.display().to_string()),
        config.database_url,
        config.listen,
        valid,
        errors.len(),
        config.harvest_configs.display()
    );
    if errors.is_empty() && oai.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn registry(config: &Config) -> anyhow::Result<sheaf_validate::Registry> {
    let store = open_store(config).await?;
    crate::startup::open_registry(config, store).await
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Serves HTTP and, for the daemon, runs every enabled source on its
/// schedule; both stop on SIGTERM/Ctrl-C, the harvests after committing
/// their current page.
async fn serve(config: &Config, with_scheduler: bool) -> anyhow::Result<ExitCode> {
    let app = App::build(config).await?;
    let stop = tokio_util::sync::CancellationToken::new();
    let scheduler = if with_scheduler {
        let (sources, errors) = sheaf_harvest::load_dir(&config.harvest_configs);
        for e in &errors {
            tracing::error!("skipping invalid harvest config: {e}");
        }
        let enabled = sources.iter().filter(|s| s.enabled).count();
        tracing::info!(
            valid = sources.len(),
            enabled,
            invalid = errors.len(),
            dir = %config.harvest_configs.display(),
            "harvest sources loaded"
        );
        let settings = sheaf_harvest::schedule::DaemonSettings {
            max_concurrent: config.daemon.max_concurrent,
            lease_ttl: std::time::Duration::from_secs(config.daemon.lease_ttl_secs),
            ..Default::default()
        };
        Some(tokio::spawn(sheaf_harvest::schedule::run_daemon(
            app.registry().clone(),
            sources,
            settings,
            stop.clone(),
        )))
    } else {
        None
    };
    tracing::info!(
        listen = %app.local_addr(),
        database = %config.database_url,
        scheduler = with_scheduler,
        "sheaf is serving"
    );
    // Tell systemd (Type=notify) we are ready; a no-op without NOTIFY_SOCKET.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let server_stop = stop.clone();
    let server = tokio::spawn(app.run_until(async move { server_stop.cancelled().await }));
    shutdown_signal().await;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    stop.cancel();
    if let Some(s) = scheduler {
        let _ = s.await;
    }
    server
        .await
        .map_err(|e| anyhow::anyhow!("server task: {e}"))??;
    Ok(ExitCode::SUCCESS)
}
