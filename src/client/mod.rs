//! What the rest of the broker holds of a client connection: its
//! [`handle`] (what was negotiated, a mailbox to the connection's task) and
//! its [`outbox`] (the encoded frames waiting for the socket, and the writer
//! that sends them) over its [`socket`] (TCP or TLS).
//!
//! Channels, queues, virtual hosts and the broker reach a client only
//! through these; the connection task itself (reading and dispatching
//! frames) lives in [`crate::connection`], above all of them.

pub mod handle;
pub mod outbox;
pub mod socket;
