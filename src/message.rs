//! A published message, as queues hold it and consumers receive it.

use std::sync::Arc;

use bytes::Bytes;

use crate::protocol::Properties;

/// One published message. Queues share it through an `Arc`: a message
/// routed to ten queues exists once, and its body is the slice of the read
/// buffer it arrived in.
#[derive(Debug)]
pub struct Message {
    /// The exchange it was published to ("" for the default exchange).
    pub exchange: Arc<str>,
    pub routing_key: Bytes,
    pub properties: Properties,
    pub body: Bytes,
}

impl Message {
    pub fn new(
        exchange: Arc<str>,
        routing_key: Bytes,
        properties: Properties,
        body: Bytes,
    ) -> Self {
        Message {
            exchange,
            routing_key,
            properties,
            body,
        }
    }

    /// Delivery mode 2.
    pub fn is_persistent(&self) -> bool {
        self.properties.is_persistent()
    }

    /// Bytes the message occupies: what `x-max-length-bytes` counts (the body)
    /// is `body.len()`; this adds the rest for memory accounting.
    pub fn size(&self) -> usize {
        self.body.len() + self.properties.len() + self.routing_key.len() + self.exchange.len()
    }
}

/// A message's place in one queue.
#[derive(Debug, Clone)]
pub struct QueuedMessage {
    /// Position in the queue: increasing in publish order. Requeued messages
    /// go back to their position, not to the tail.
    pub seq: u64,
    pub message: Arc<Message>,
    /// Whether it was delivered before (and requeued since).
    pub redelivered: bool,
}
