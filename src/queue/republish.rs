//! What a queue asks of the virtual host it lives in, which sits above it:
//! routing the messages the broker itself publishes (dead letters, and the
//! delayed messages of an `x-delayed-message` exchange), and removing a
//! queue that expired. The virtual host implements it and hands itself in
//! when it makes a queue, so `queue/` never names the virtual host.

use std::fmt;
use std::sync::Arc;

use super::Queue;
use crate::message::Message;

pub trait Republish: Send + Sync + fmt::Debug {
    /// Collect into `queues` the queues `message` goes to when the broker
    /// publishes it through `exchange` (the empty name is the default
    /// exchange). Internal exchanges are allowed, as in RabbitMQ; a missing
    /// exchange routes nowhere.
    fn route_internal(&self, exchange: &str, message: &Message, queues: &mut Vec<Arc<Queue>>);

    /// `queue` was unused for its `x-expires`: delete it, and cancel its
    /// consumers.
    fn expire_queue(&self, queue: &Arc<Queue>);
}
