//! Shared set-up for the integration tests: a broker on an ephemeral port,
//! lapin connections to it, and helpers to read AMQP errors.
//!
//! Set `WARREN_TEST_AMQP_URI` to run the same tests against another broker
//! (RabbitMQ, say) instead of an in-process Warren; tests that need the
//! in-process broker itself skip then.
#![allow(dead_code)]

pub mod admin;
pub mod certs;
pub mod process;
pub mod raw;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use warren::{Config, Server};

/// True when `WARREN_TEST_AMQP_URI` points the suite at an outside broker.
/// For tests that start Warren themselves (its binary, its embedding, its
/// store) rather than through [`TestBroker`]: they check Warren's own
/// machinery, which has no counterpart to compare with, so they skip then
/// (checking Warren again in a run meant to check RabbitMQ proves nothing).
pub fn outside_broker_requested() -> bool {
    std::env::var_os("WARREN_TEST_AMQP_URI").is_some()
}

/// A broker for one test. Call [`TestBroker::stop`] at the end.
pub struct TestBroker {
    server: Option<Server>,
    config: Option<Config>,
    uri: String,
    pub addr: std::net::SocketAddr,
    pub data_dir: PathBuf,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A name no other test (or earlier run against a shared broker) uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        warren::util::now_millis() % 1_000_000
    )
}

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(&format!("warren-{prefix}")));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

impl TestBroker {
    /// Start a broker with default settings.
    pub async fn start() -> TestBroker {
        Self::start_with(|_| {}).await
    }

    /// Start a broker after adjusting its configuration.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestBroker {
        if let Ok(uri) = std::env::var("WARREN_TEST_AMQP_URI") {
            let addr = uri
                .split('@')
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .and_then(|hp| std::net::ToSocketAddrs::to_socket_addrs(hp).ok())
                .and_then(|mut a| a.next())
                .expect("WARREN_TEST_AMQP_URI like amqp://guest:guest@127.0.0.1:5673/%2f");
            return TestBroker {
                server: None,
                config: None,
                uri,
                addr,
                data_dir: temp_dir("external"),
            };
        }
        let data_dir = temp_dir("data");
        let mut config = Config::ephemeral(&data_dir);
        adjust(&mut config);
        Self::start_config(config).await
    }

    /// Start a broker with exactly this configuration.
    pub async fn start_config(config: Config) -> TestBroker {
        let data_dir = config.data_dir.clone();
        let server = Server::start(config.clone()).await.expect("broker starts");
        let addr = server.local_addr();
        TestBroker {
            uri: format!("amqp://guest:guest@{addr}/%2f"),
            server: Some(server),
            config: Some(config),
            addr,
            data_dir,
        }
    }

    /// True when the tests run against an outside broker.
    pub fn is_external(&self) -> bool {
        self.server.is_none()
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    pub fn server(&self) -> Option<&Server> {
        self.server.as_ref()
    }

    pub async fn connect(&self) -> Connection {
        self.connect_named("warren-test").await
    }

    pub async fn connect_named(&self, name: &str) -> Connection {
        Connection::connect(
            &self.uri,
            ConnectionProperties::default().with_connection_name(name.into()),
        )
        .await
        .expect("connect")
    }

    /// A connection and a channel on it.
    pub async fn channel(&self) -> (Connection, Channel) {
        let conn = self.connect().await;
        let ch = conn.create_channel().await.expect("channel");
        (conn, ch)
    }

    /// Stop the broker cleanly and start it again on the same data
    /// directory (on a new ephemeral port).
    pub async fn restart(self) -> TestBroker {
        self.restart_with(|_| {}).await
    }

    /// Restart after adjusting the configuration.
    pub async fn restart_with(mut self, adjust: impl FnOnce(&mut Config)) -> TestBroker {
        let mut config = self
            .config
            .take()
            .expect("restart needs an in-process broker");
        adjust(&mut config);
        if let Some(server) = self.server.take() {
            let old = std::sync::Arc::downgrade(server.broker());
            server.shutdown().await;
            // Background tasks let go of the old broker (and its store's
            // lock) shortly after the shutdown.
            for _ in 0..200 {
                if old.strong_count() == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        TestBroker::start_config(config).await
    }

    /// Manage users, vhosts, permissions and limits of the broker under
    /// test: Warren's library API, or RabbitMQ's management API at
    /// `WARREN_TEST_HTTP_URI` when the tests run against an outside broker.
    pub fn admin(&self) -> admin::Admin {
        match &self.server {
            Some(server) => admin::Admin::Warren(std::sync::Arc::downgrade(server.broker())),
            None => admin::Admin::Http(admin::Http::from_env().expect(
                "WARREN_TEST_HTTP_URI (like http://guest:guest@127.0.0.1:15673) to manage the outside broker",
            )),
        }
    }

    /// The management HTTP API of the broker under test: the in-process
    /// Warren's, or the outside broker's at `WARREN_TEST_HTTP_URI`.
    pub fn http(&self) -> admin::Http {
        match &self.server {
            Some(server) => {
                let addr = server
                    .management_addr()
                    .expect("the broker serves the management API");
                admin::Http::new(&format!("http://guest:guest@{addr}"))
            }
            None => admin::Http::from_env().expect(
                "WARREN_TEST_HTTP_URI (like http://guest:guest@127.0.0.1:15673) for the outside broker's API",
            ),
        }
    }

    /// The URI to reach `vhost` as `user`.
    pub fn uri_as(&self, user: &str, password: &str, vhost: &str) -> String {
        format!(
            "amqp://{}:{}@{}/{}",
            admin::encode(user),
            admin::encode(password),
            self.addr,
            admin::encode(vhost)
        )
    }

    /// Connect to `vhost` as `user`.
    pub async fn connect_as(
        &self,
        user: &str,
        password: &str,
        vhost: &str,
    ) -> lapin::Result<Connection> {
        within(
            10,
            Connection::connect(
                &self.uri_as(user, password, vhost),
                ConnectionProperties::default(),
            ),
        )
        .await
    }

    /// A connection to `vhost` as `user`, and a channel on it.
    pub async fn channel_as(
        &self,
        user: &str,
        password: &str,
        vhost: &str,
    ) -> (Connection, Channel) {
        let conn = self
            .connect_as(user, password, vhost)
            .await
            .expect("connect");
        let ch = conn.create_channel().await.expect("channel");
        (conn, ch)
    }

    /// The configuration the broker runs with.
    pub fn config(&self) -> Option<&Config> {
        self.config.as_ref()
    }

    /// Stop the broker (a no-op against an outside broker).
    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// The AMQP reply code of a lapin error, if the broker sent one.
pub fn reply_code(err: &lapin::Error) -> Option<u16> {
    match err.kind() {
        lapin::ErrorKind::ProtocolError(e) => Some(e.get_id()),
        _ => None,
    }
}

/// The reply text of a lapin error, if the broker sent one.
pub fn reply_text(err: &lapin::Error) -> Option<String> {
    match err.kind() {
        lapin::ErrorKind::ProtocolError(e) => Some(e.get_message().to_string()),
        _ => None,
    }
}

/// Assert an operation failed with this reply code and a text containing `text`.
#[track_caller]
pub fn assert_amqp_error<T: std::fmt::Debug>(result: lapin::Result<T>, code: u16, text: &str) {
    match result {
        Ok(v) => panic!("expected AMQP error {code}, got Ok({v:?})"),
        Err(e) => {
            assert_eq!(reply_code(&e), Some(code), "error was {e:?}");
            let got = reply_text(&e).unwrap_or_default();
            assert!(
                got.contains(text),
                "reply text {got:?} does not contain {text:?}"
            );
        }
    }
}

/// Declare a server-named exclusive queue; returns its name.
pub async fn temp_queue(ch: &Channel) -> String {
    ch.queue_declare(
        "".into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("queue.declare")
    .name()
    .to_string()
}

/// A passive `queue.declare`: the queue's message and consumer counts, or
/// the broker's error (404 for a queue that does not exist).
pub async fn declare_passive(ch: &Channel, queue: &str) -> lapin::Result<lapin::Queue> {
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
}

/// Run `fut` with a deadline so a missing frame fails the test instead of hanging it.
pub async fn within<T>(secs: u64, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .expect("timed out")
}

/// The next error a connection reports (a channel or connection close), from
/// its `events_listener()`. Waits at most five seconds.
///
/// Use this after a method with no reply (basic.publish, basic.ack, …) that
/// makes the broker close the channel: a follow-up call would race the close.
pub async fn next_error(
    events: &mut (impl futures_lite::Stream<Item = lapin::Event> + Unpin),
) -> lapin::Error {
    use futures_lite::StreamExt;
    loop {
        match within(5, events.next()).await {
            Some(lapin::Event::Error(e)) => return e,
            Some(_) => continue,
            None => panic!("event stream ended without an error"),
        }
    }
}

/// Publish `body` (no confirm awaited). A publish the broker refuses closes
/// the channel: read the error with [`next_error`].
pub async fn publish_with(
    ch: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: lapin::BasicProperties,
) {
    ch.basic_publish(
        exchange.into(),
        routing_key.into(),
        lapin::options::BasicPublishOptions::default(),
        body,
        properties,
    )
    .await
    .expect("basic.publish");
}
