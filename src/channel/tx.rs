//! Transactions: `tx.select`, `commit` and `rollback` over publishes and
//! acknowledgements. Publishes are routed when published (as RabbitMQ does)
//! and delivered at commit; acknowledgements are
//! taken off the unacked list at once (so a second ack of the same tag is
//! an error, as in RabbitMQ) and settled at commit, or put back on rollback.

use std::sync::Arc;

use amq_protocol::protocol::{AMQPClass, tx};

use super::confirm::Outcome;
use super::link::Unacked;
use super::{Channel, Session, Settle, settle_unacked};
use crate::amqp_err;
use crate::message::Message;
use crate::protocol::AmqpResult;
use crate::queue::Queue;

#[derive(Debug, Default)]
pub(super) struct Tx {
    publishes: Vec<(Arc<Message>, Vec<Arc<Queue>>, bool)>,
    settles: Vec<(Settle, Vec<Unacked>)>,
}

impl Tx {
    pub(super) fn publish(
        &mut self,
        message: Arc<Message>,
        queues: Vec<Arc<Queue>>,
        mandatory: bool,
    ) {
        self.publishes.push((message, queues, mandatory));
    }

    pub(super) fn settle(&mut self, how: Settle, items: Vec<Unacked>) {
        self.settles.push((how, items));
    }

    /// Acknowledgements not yet committed (to requeue when the channel closes).
    pub(super) fn into_pending_acks(self) -> Vec<Unacked> {
        self.settles
            .into_iter()
            .flat_map(|(_, items)| items)
            .collect()
    }
}

impl Channel {
    pub(super) fn tx_select(&mut self, s: &Session) -> AmqpResult<()> {
        if self.confirms.is_some() {
            return Err(amqp_err!(
                PreconditionFailed,
                "cannot switch from confirm to tx mode"
            ));
        }
        if self.tx.is_none() {
            self.tx = Some(Tx::default());
            self.link
                .stats
                .transactional
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        s.send(
            self.id,
            AMQPClass::Tx(tx::AMQPMethod::SelectOk(tx::SelectOk {})),
        );
        Ok(())
    }

    pub(super) fn tx_commit(&mut self, s: &Session) -> AmqpResult<()> {
        let Some(pending) = self.tx.replace(Tx::default()) else {
            return Err(amqp_err!(
                PreconditionFailed,
                "channel is not transactional"
            ));
        };
        let mut stored = false;
        for (message, queues, mandatory) in pending.publishes {
            stored |= self.deliver_routed(s, &message, &queues, mandatory) == Outcome::Unsynced;
        }
        for (how, items) in pending.settles {
            self.link.deliveries.lock().release(&items);
            settle_unacked(items, how);
        }
        // commit-ok only once the transaction's persistent messages are on disk.
        s.reply_when(
            self.id,
            AMQPClass::Tx(tx::AMQPMethod::CommitOk(tx::CommitOk {})),
            stored,
        );
        Ok(())
    }

    pub(super) fn tx_rollback(&mut self, s: &Session) -> AmqpResult<()> {
        let Some(pending) = self.tx.replace(Tx::default()) else {
            return Err(amqp_err!(
                PreconditionFailed,
                "channel is not transactional"
            ));
        };
        self.link
            .deliveries
            .lock()
            .restore(pending.into_pending_acks());
        s.send(
            self.id,
            AMQPClass::Tx(tx::AMQPMethod::RollbackOk(tx::RollbackOk {})),
        );
        Ok(())
    }
}
