//! The listener, and [`Server`]: a running broker that can be stopped.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::alarm;
use crate::broker::Broker;
use crate::config::Config;
use crate::connection;

/// How long shutdown waits for connections to finish their close handshake.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running broker.
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    /// The management API's address, when it is served.
    management_addr: Option<SocketAddr>,
    broker: Arc<Broker>,
    shutdown: watch::Sender<bool>,
    acceptor: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Start a broker: bind the listener (only once everything is ready to
    /// serve) and accept connections in the background.
    pub async fn start(config: Config) -> io::Result<Server> {
        let invalid =
            |e: crate::config::ConfigError| io::Error::new(io::ErrorKind::InvalidInput, e);
        config.validate().map_err(invalid)?;
        let ram = alarm::total_ram().unwrap_or(u64::MAX);
        let memory_limit = config.memory_limit(ram).map_err(invalid)?;
        let disk_limit = config.disk_limit().map_err(invalid)?;
        // Recovery reads the store: off the async workers.
        let broker = tokio::task::spawn_blocking(move || open_broker(config))
            .await
            .map_err(io::Error::other)??;
        let broker = Arc::new(broker);
        let listener = TcpListener::bind(broker.config.listen).await?;
        let local_addr = listener.local_addr()?;
        info!(
            "Warren {} listening for AMQP on {local_addr}",
            env!("CARGO_PKG_VERSION")
        );
        let (shutdown, signal) = watch::channel(false);
        broker.alarms.set_memory_limit(memory_limit);
        broker.alarms.set_disk_limit(disk_limit);
        tokio::spawn(alarm_monitor(&broker, signal.clone()));
        if let Some(events) = broker.take_timer_events() {
            tokio::spawn(crate::timer::run(events));
        }
        let management_addr = match broker.config.no_management {
            true => None,
            false => Some(start_management(&broker, local_addr, signal.clone()).await?),
        };
        let acceptor = tokio::spawn(accept_loop(listener, broker.clone(), signal));
        Ok(Server {
            local_addr,
            management_addr,
            broker,
            shutdown,
            acceptor: Some(acceptor),
        })
    }

    /// The address the listener is bound to (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The management API's address (with the real port when 0 was
    /// asked), unless `--no-management`.
    pub fn management_addr(&self) -> Option<SocketAddr> {
        self.management_addr
    }

    /// The broker behind this server.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Stop accepting, close every connection with 320 CONNECTION_FORCED,
    /// and wait for them to finish.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        self.broker.close_connections();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.await;
        }
        let store = self.broker.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
        info!("Warren stopped");
    }
}

impl Drop for Server {
    /// A server dropped without `shutdown` still stops listening and closes
    /// its connections, in the background.
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.broker.close_connections();
    }
}

/// Bind the management listener and serve the API, the UI and the rate
/// sampler until `stop`.
async fn start_management(
    broker: &Arc<Broker>,
    amqp: SocketAddr,
    stop: watch::Receiver<bool>,
) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(broker.config.management_listen).await?;
    let addr = listener.local_addr()?;
    info!("management API and UI on http://{addr}/");
    let state = crate::http::AppState::new(broker.clone(), amqp, addr);
    tokio::spawn(crate::http::sampler::run(broker.clone(), stop.clone()));
    tokio::spawn(async move {
        if let Err(e) = crate::http::serve(listener, state, stop).await {
            warn!("management server stopped: {e}");
        }
    });
    Ok(addr)
}

/// The resource alarm monitor of `broker`; alarm changes reach its
/// connections.
fn alarm_monitor(
    broker: &Arc<Broker>,
    stop: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let weak = Arc::downgrade(broker);
    let on_change = move || {
        if let Some(broker) = weak.upgrade() {
            broker.alarms_changed();
        }
    };
    alarm::monitor(
        broker.alarms.clone(),
        broker.config.data_dir.clone(),
        on_change,
        stop,
    )
}

async fn accept_loop(
    listener: TcpListener,
    broker: Arc<Broker>,
    mut signal: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    connections.spawn(connection::serve(socket, peer, broker.clone(), signal.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = signal.changed() => break,
        }
    }
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        connections.abort_all();
    }
}

/// Open the broker, then import the definitions file it is configured
/// with, if any (at every start, as RabbitMQ's `load_definitions`).
fn open_broker(config: Config) -> io::Result<Broker> {
    for warning in &config.config_warnings {
        warn!("{warning}");
    }
    let broker = Broker::open(config).map_err(io::Error::other)?;
    if let Some(definitions) = &broker.config.config_definitions {
        crate::definitions::import(&broker, definitions).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("users and vhosts of the configuration file: {e}"),
            )
        })?;
    }
    if let Some(path) = broker.config.definitions.clone() {
        let imported = crate::definitions::load_file(&broker, &path)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        info!(
            "imported definitions from {}: {} users, {} vhosts, {} policies, {} queues, {} exchanges, {} bindings",
            path.display(),
            imported.users,
            imported.vhosts,
            imported.policies,
            imported.queues,
            imported.exchanges,
            imported.bindings
        );
    }
    Ok(broker)
}
