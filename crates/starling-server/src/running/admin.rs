//! The admin socket's server side: the socket, started with the server, answered by
//! `starling_router::admin::AdminHandler`. The client side is `commands::admin`.

use std::sync::Arc;

use anyhow::Context as _;
use starling_admin::{AdminListener, ListenerLimits};
use starling_config::Config;
use starling_router::admin::AdminHandler;
use starling_router::{Router, Store};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

/// Open the admin socket (unless `admin.enabled` is false) and answer requests on a task until
/// `shutdown` turns true; the task removes the socket file when it ends. Fails when another
/// server answers on the socket.
pub async fn start<S: Store>(
    config: &Config,
    router: Arc<Router<S>>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Option<JoinHandle<()>>> {
    if !config.admin.enabled {
        return Ok(None);
    }
    let path = config.admin_socket();
    let listener = AdminListener::bind(&path, ListenerLimits::default())
        .await
        .context("cannot open the admin socket (admin.socket)")?;
    info!(path = %path.display(), "admin socket listening");
    let handler = Arc::new(AdminHandler::new(router));
    Ok(Some(tokio::spawn(listener.serve(handler, async move {
        let _ = shutdown.wait_for(|stopping| *stopping).await;
    }))))
}
