//! One startup shape for production and tests: [`App::build`] (connect,
//! migrate, bind) → [`App::port`] → [`App::run_until`] (serve until the
//! shutdown future resolves).

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use sheaf_store::DynStore;
use sheaf_validate::Registry;
use tokio::net::TcpListener;

use crate::config::Config;

/// The wired application, bound and ready to serve.
pub struct App {
    listener: TcpListener,
    router: Router,
    registry: Registry,
}

impl App {
    /// Connects to (and migrates) the store, builds every face and binds
    /// the listener.
    pub async fn build(config: &Config) -> anyhow::Result<App> {
        let store = open_store(config).await?;
        Self::with_store(config, store).await
    }

    /// Builds the faces over an existing store (registering the built-in
    /// schemas if missing) and binds the listener.
    pub async fn with_store(config: &Config, store: DynStore) -> anyhow::Result<App> {
        let registry = open_registry(config, store).await?;
        let router = routes(config, &registry)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        Ok(App {
            listener,
            router,
            registry,
        })
    }

    /// The bound port (useful when the config asked for port 0).
    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The schema registry (and through it the store) the app serves.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .context("server failed")
    }
}

/// Connects to the configured database and migrates it.
pub async fn open_store(config: &Config) -> anyhow::Result<DynStore> {
    sheaf_store::connect(&config.database_url)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// The schema registry over a store, with the built-in schemas (oai_dc)
/// registered so harvested Dublin Core validates out of the box.
pub async fn open_registry(config: &Config, store: DynStore) -> anyhow::Result<Registry> {
    let registry = Registry::new(store, config.validation);
    registry
        .ensure_builtins()
        .await
        .context("cannot register the built-in schemas")?;
    Ok(registry)
}

/// Every face, merged. An unusable `[oai]` section (including a crosswalk
/// stylesheet that is unsafe or does not compile) stops the start.
fn routes(config: &Config, registry: &Registry) -> anyhow::Result<Router> {
    let oai = sheaf_oai::router(registry.store().clone(), config.oai.clone())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(crate::health::router(registry.store().clone())
        .merge(sheaf_rest::router(registry.clone(), config.rest.clone()))
        .merge(oai))
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested");
}
