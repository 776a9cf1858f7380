//! The listeners (AMQP, and AMQPS when TLS is configured), and [`Server`]:
//! a running broker that can be stopped.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::alarm;
use crate::broker::Broker;
use crate::config::Config;
use crate::connection;
use crate::metrics::MetricsServer;
use crate::tls::{Tls, TlsOptions};

/// How long shutdown waits for connections to finish their close handshake.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running broker.
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    tls_local_addr: Option<SocketAddr>,
    /// The management API's address, when it is served.
    management_addr: Option<SocketAddr>,
    broker: Arc<Broker>,
    shutdown: watch::Sender<bool>,
    acceptors: Vec<tokio::task::JoinHandle<()>>,
    metrics: Option<MetricsServer>,
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
        let tls = match TlsOptions::from_config(&config) {
            Ok(Some(options)) => Some(Tls::new(&options)),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
        .transpose()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // Recovery reads the store: off the async workers.
        let broker = tokio::task::spawn_blocking(move || open_broker(config))
            .await
            .map_err(io::Error::other)??;
        let broker = Arc::new(broker);
        let listener = TcpListener::bind(broker.config.listen).await?;
        let local_addr = listener.local_addr()?;
        let tls_listener = match tls {
            Some(tls) => Some((TcpListener::bind(broker.config.tls_listen).await?, tls)),
            None => None,
        };
        let tls_local_addr = match &tls_listener {
            Some((listener, _)) => Some(listener.local_addr()?),
            None => None,
        };
        info!(
            "Warren {} listening for AMQP on {local_addr}",
            env!("CARGO_PKG_VERSION")
        );
        if let Some(addr) = tls_local_addr {
            info!("listening for AMQP over TLS on {addr}");
        }
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
        let metrics = start_metrics(&broker, signal.clone()).await;
        let mut acceptors = vec![tokio::spawn(accept_loop(
            listener,
            None,
            broker.clone(),
            signal.clone(),
        ))];
        if let Some((listener, tls)) = tls_listener {
            acceptors.push(tokio::spawn(accept_loop(
                listener,
                Some(tls),
                broker.clone(),
                signal,
            )));
        }
        Ok(Server {
            local_addr,
            tls_local_addr,
            management_addr,
            broker,
            shutdown,
            acceptors,
            metrics,
        })
    }

    /// The address the listener is bound to (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address the TLS listener is bound to, when TLS is configured.
    pub fn tls_local_addr(&self) -> Option<SocketAddr> {
        self.tls_local_addr
    }

    /// Where Prometheus metrics are served, unless they are off or their
    /// port could not be bound.
    pub fn prometheus_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(MetricsServer::local_addr)
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
        for acceptor in std::mem::take(&mut self.acceptors) {
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
    let store = Arc::downgrade(&broker.store);
    let store_failing = move || store.upgrade().is_some_and(|s| s.syncer.is_failing());
    alarm::monitor(
        broker.alarms.clone(),
        broker.config.data_dir.clone(),
        on_change,
        store_failing,
        stop,
    )
}

/// The Prometheus listener, unless turned off. A port that cannot be bound
/// is logged and the broker runs without metrics: they are an aid, and a
/// second broker on the same machine (tests, a developer's two checkouts)
/// should still start.
async fn start_metrics(broker: &Arc<Broker>, stop: watch::Receiver<bool>) -> Option<MetricsServer> {
    if broker.config.no_prometheus {
        return None;
    }
    let addr = broker.config.prometheus_listen;
    match MetricsServer::start(addr, broker, stop).await {
        Ok(server) => {
            info!(
                "serving Prometheus metrics on http://{}/metrics",
                server.local_addr()
            );
            Some(server)
        }
        Err(e) => {
            error!("cannot serve Prometheus metrics on {addr}: {e}");
            None
        }
    }
}

/// Accept connections on `listener` (AMQPS with `tls`) until the broker
/// stops, then give them `SHUTDOWN_GRACE` to close.
async fn accept_loop(
    listener: TcpListener,
    tls: Option<Tls>,
    broker: Arc<Broker>,
    mut signal: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let _ = socket.set_nodelay(true);
                    let broker = broker.clone();
                    let signal = signal.clone();
                    match &tls {
                        None => connections.spawn(connection::serve(socket, peer, None, broker, signal)),
                        Some(tls) => connections.spawn(serve_tls(tls.clone(), socket, peer, broker, signal)),
                    };
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

/// The TLS handshake, within the AMQP handshake's time limit, then AMQP.
async fn serve_tls(
    tls: Tls,
    socket: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    mut signal: watch::Receiver<bool>,
) {
    let limit = broker.config.handshake_timeout();
    let handshake = tokio::select! {
        done = tokio::time::timeout(limit, tls.accept(socket)) => done,
        _ = signal.changed() => return,
    };
    match handshake {
        Ok(Ok((stream, client))) => {
            connection::serve(stream, peer, Some(client), broker, signal).await;
        }
        Ok(Err(e)) => warn!(peer = %peer, "TLS handshake failed: {e}"),
        Err(_) => warn!(peer = %peer, "TLS handshake timed out"),
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
