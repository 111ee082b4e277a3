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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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
        Command::Daemon | Command::Serve => serve(&config).await,
        Command::Migrate => {
            open_store(&config).await?;
            println!("database {} is migrated", config.database_url);
            Ok(ExitCode::SUCCESS)
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            println!(
                "config ok: database {}, listen {}, harvest configs in {}",
                config.database_url,
                config.listen,
                config.harvest_configs.display()
            );
            Ok(ExitCode::SUCCESS)
        }
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
        Command::Harvest { .. } | Command::Runs { .. } => not_built("harvesting"),
    }
}

async fn registry(config: &Config) -> anyhow::Result<sheaf_validate::Registry> {
    let store = open_store(config).await?;
    crate::startup::open_registry(config, store).await
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn not_built(what: &str) -> anyhow::Result<ExitCode> {
    eprintln!("sheaf: {what} is not built yet in this version");
    Ok(ExitCode::from(2))
}

async fn serve(config: &Config) -> anyhow::Result<ExitCode> {
    let app = App::build(config).await?;
    tracing::info!(
        listen = %app.local_addr(),
        database = %config.database_url,
        "sheaf is serving"
    );
    // Tell systemd (Type=notify) we are ready; a no-op without NOTIFY_SOCKET.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    app.run_until(shutdown_signal()).await?;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    Ok(ExitCode::SUCCESS)
}
