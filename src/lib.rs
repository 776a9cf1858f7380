//! Warren: an AMQP 0-9-1 message broker that speaks RabbitMQ's wire protocol.
//!
//! Start one in-process with [`Server::start`]; the `warren` binary does the
//! same from command-line flags.
//!
//! Module map:
//! - [`protocol`]: the wire: frames, methods, properties, field tables, reply codes.
//! - [`connection`]: one task per socket: handshake, heartbeats, frame dispatch.
//! - [`client`]: what the rest of the broker holds of a connection: its
//!   handle (negotiated settings, mailbox) and its outbox and writer.
//! - [`channel`]: per-channel state: publish assembly, confirms, tx, consumers, acks.
//! - [`vhost`]: exchanges, queues and bindings of a virtual host, and routing.
//! - [`exchange`]: direct, fanout, topic and headers routing.
//! - [`queue`]: ready messages, consumers, delivery and settlement.
//! - [`broker`]: virtual hosts, users, live connections; recovery at start.
//! - [`store`]: durable state in sled, group commit of confirms.
//! - [`alarm`]: memory and disk alarms that block publishers.
//! - [`timer`]: deadlines: message and queue expiry, delayed messages.
//! - [`auth`]: users and SASL mechanisms.
//! - [`config`]: flags and environment variables.
//! - [`server`]: the listener and the embeddable broker handle.

pub mod alarm;
pub mod auth;
pub mod broker;
pub mod channel;
pub mod client;
pub mod config;
pub mod connection;
pub mod exchange;
pub mod message;
pub mod protocol;
pub mod queue;
pub mod server;
pub mod store;
pub mod timer;
pub mod util;
pub mod vhost;

pub use config::Config;
pub use server::Server;

// The README's Rust examples are compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
