//! What the rest of the broker holds of a connection: its outbox, what was
//! negotiated, and a mailbox for the few things that must run on the
//! connection's own task.

use std::net::SocketAddr;
use std::sync::Arc;

use amq_protocol::types::FieldTable;
use tokio::sync::mpsc::UnboundedSender;

use super::outbox::Outbox;
use crate::protocol::{AmqpError, ReplyCode};
use crate::stats::ConnectionStats;

/// Capabilities the client announced in `connection.start-ok`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientCapabilities {
    pub consumer_cancel_notify: bool,
    pub connection_blocked: bool,
    pub authentication_failure_close: bool,
    pub publisher_confirms: bool,
    pub basic_nack: bool,
}

/// Work another task hands to a connection's task.
#[derive(Debug)]
pub enum ConnEvent {
    /// Close the connection with this error (320 CONNECTION_FORCED at shutdown).
    Close(AmqpError),
    /// The broker cancelled a consumer (its queue was deleted).
    ConsumerCancelled { channel: u16, tag: Arc<str> },
    /// The outbox drained after deliveries were held back for room.
    Writable,
    /// Close one channel with this error.
    ChannelError { channel: u16, error: AmqpError },
    /// A resource alarm was raised or cleared.
    AlarmsChanged,
}

/// What a connection is closed with when the broker stops (as RabbitMQ words it).
pub fn shutdown_error() -> AmqpError {
    AmqpError::new(
        ReplyCode::ConnectionForced,
        "broker forced connection closure with reason 'shutdown'",
    )
}

/// A running connection, after `connection.open`.
#[derive(Debug)]
pub struct ConnectionHandle {
    pub id: u64,
    pub peer: SocketAddr,
    /// The client-provided connection name, if any.
    pub name: Option<String>,
    pub user: String,
    pub vhost: Arc<str>,
    pub frame_max: u32,
    pub capabilities: ClientCapabilities,
    /// Over TLS: the session's protocol, cipher suite and client
    /// certificate (what RabbitMQ's management shows as `ssl_*` and
    /// `peer_cert_*`).
    pub tls: Option<crate::tls::TlsClient>,
    pub outbox: Arc<Outbox>,
    pub events: UnboundedSender<ConnEvent>,
    /// What the management API tells about the connection.
    pub info: ConnectionInfo,
    /// Byte counters and the open channels' counters.
    pub stats: Arc<ConnectionStats>,
}

/// Facts of a connection fixed at its opening.
#[derive(Debug, Clone, Default)]
pub struct ConnectionInfo {
    /// The broker's side of the socket.
    pub local: Option<SocketAddr>,
    pub client_properties: FieldTable,
    pub auth_mechanism: String,
    pub channel_max: u16,
    /// Negotiated heartbeat, in seconds.
    pub heartbeat: u16,
    /// Milliseconds since the epoch.
    pub connected_at: u64,
}

impl ConnectionHandle {
    /// Hand work to the connection's task; a connection already gone ignores it.
    pub fn send(&self, event: ConnEvent) {
        let _ = self.events.send(event);
    }

    /// RabbitMQ's name of the connection: "peer -> local".
    pub fn display_name(&self) -> String {
        match self.info.local {
            Some(local) => format!("{} -> {}", self.peer, local),
            None => self.peer.to_string(),
        }
    }

    /// How the connection appears in logs: "127.0.0.1:5000 -> 127.0.0.1:5672 (name)".
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => format!("{} ({name})", self.peer),
            None => self.peer.to_string(),
        }
    }
}
