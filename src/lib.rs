//! Warren: an AMQP 0-9-1 message broker that speaks RabbitMQ's wire protocol.
//!
//! Start one in-process with [`Server::start`]; the `warren` binary does the
//! same from command-line flags.
//!
//! Module map, from the top floor down (a module uses only those below it;
//! where a lower one must reach up, it owns a small trait the upper one
//! implements):
//! - [`server`]: the listener and the embeddable broker handle.
//! - [`connection`]: one task per socket: handshake, heartbeats, frame dispatch.
//! - [`channel`]: per-channel state: publish assembly, confirms, tx, consumers, acks.
//! - [`broker`]: virtual hosts, live connections; recovery at start.
//! - [`vhost`]: exchanges, queues and bindings of a virtual host, and routing.
//! - [`exchange`]: direct, fanout, topic, headers and delayed-message routing.
//! - [`queue`]: ready messages, consumers, delivery and settlement; the
//!   traits it is handed: `ConsumerChannel` (a consumer's channel) and
//!   `Republish` (its virtual host: dead letters, expiry).
//! - [`http`]: the management HTTP API (RabbitMQ's) and the web UI.
//! - [`stats`]: message counters and rates for the management API.
//! - [`policy`]: policies and operator policies: which applies, effective arguments.
//! - [`definitions`]: RabbitMQ's definitions JSON: export, checked import.
//! - [`access`]: users, password hashes, SASL, permissions, limits: who may do what.
//! - [`store`]: durable state in sled, group commit of confirms.
//! - [`stream`]: stream queues' append-only segment log: append, flush, readers, retention.
//! - [`client`]: what the rest of the broker holds of a connection: its
//!   handle (negotiated settings, mailbox) and its outbox and writer.
//! - [`message`]: a published message as queues hold it.
//! - [`timer`]: deadlines: message and queue expiry, delayed messages.
//! - [`alarm`]: memory and disk alarms that block publishers.
//! - [`protocol`]: the wire: frames, methods, properties, field tables, reply codes.
//! - [`config`]: flags and environment variables; [`config_file`]: `--config` (TOML or rabbitmq.conf).
//! - [`logging`]: log output (text or JSON) that never takes the broker down.
//! - [`util`]: small helpers with no better home.

pub mod access;
pub mod alarm;
pub mod broker;
pub mod channel;
pub mod client;
pub mod config;
pub mod config_file;
pub mod connection;
pub mod definitions;
pub mod exchange;
pub mod http;
pub mod logging;
pub mod message;
pub mod policy;
pub mod protocol;
pub mod queue;
pub mod server;
pub mod stats;
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
