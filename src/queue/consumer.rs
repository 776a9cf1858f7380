//! A consumer: a subscription of one channel to one queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use amq_protocol::types::FieldTable;

use crate::channel::link::ChannelLink;

/// What `basic.consume` created. The queue keeps it in its consumer list; the
/// channel keeps it under its tag.
#[derive(Debug)]
pub struct Consumer {
    pub tag: Arc<str>,
    pub channel: Arc<ChannelLink>,
    pub no_ack: bool,
    pub exclusive: bool,
    /// Per-consumer prefetch, fixed when the consumer was created (0 = none).
    pub prefetch: u16,
    /// `x-priority`: higher goes first.
    pub priority: i32,
    pub arguments: FieldTable,
    /// Deliveries awaiting ack. Changed only under the channel's delivery lock.
    unacked: AtomicU32,
}

impl Consumer {
    pub fn new(
        tag: Arc<str>,
        channel: Arc<ChannelLink>,
        no_ack: bool,
        exclusive: bool,
        prefetch: u16,
        priority: i32,
        arguments: FieldTable,
    ) -> Self {
        Consumer {
            tag,
            channel,
            no_ack,
            exclusive,
            prefetch,
            priority,
            arguments,
            unacked: AtomicU32::new(0),
        }
    }

    pub fn unacked(&self) -> u32 {
        self.unacked.load(Ordering::Relaxed)
    }

    /// Whether its own prefetch allows one more delivery.
    pub fn below_prefetch(&self) -> bool {
        self.no_ack || self.prefetch == 0 || self.unacked() < self.prefetch as u32
    }

    pub(crate) fn add_unacked(&self) {
        self.unacked.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn sub_unacked(&self) {
        // Saturating: a settle can never outnumber deliveries, but never wrap.
        let _ = self
            .unacked
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
    }
}
