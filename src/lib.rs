//! Warren: an AMQP 0-9-1 message broker that speaks RabbitMQ's wire protocol.
//!
//! Start one in-process with [`Server::start`]; the `warren` binary does the
//! same from command-line flags.
//!
//! Module map:
//! - [`protocol`]: the wire: frames, methods, properties, field tables, reply codes.
//! - [`connection`]: one task per socket: handshake, heartbeats, frame dispatch, the writer.
//! - [`channel`]: per-channel state: publish assembly, confirms, tx, consumers, acks.
//! - [`vhost`]: exchanges, queues and bindings of a virtual host, and routing.
//! - [`exchange`]: direct, fanout, topic and headers routing.
//! - [`queue`]: ready messages, consumers, delivery and settlement.
//! - [`broker`]: virtual hosts, live connections; recovery at start.
//! - [`store`]: durable state in sled, group commit of confirms.
//! - [`stream`]: stream queues' append-only segment log: append, flush, readers, retention.
//! - [`alarm`]: memory and disk alarms that block publishers.
//! - [`timer`]: deadlines: message and queue expiry, delayed messages.
//! - [`access`]: users, password hashes, SASL, permissions, limits: who may do what.
//! - [`config`]: flags and environment variables.
//! - [`server`]: the listener and the embeddable broker handle.

pub mod access;
pub mod alarm;
pub mod broker;
pub mod channel;
pub mod config;
pub mod connection;
pub mod exchange;
pub mod message;
pub mod protocol;
pub mod queue;
pub mod server;
pub mod store;
pub mod stream;
pub mod timer;
pub mod util;
pub mod vhost;

pub use config::Config;
pub use server::Server;

// The README's Rust examples are compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
