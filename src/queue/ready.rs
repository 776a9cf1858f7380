//! The ready messages of a queue, in delivery order.

use std::collections::VecDeque;

use crate::message::QueuedMessage;

/// Messages waiting for a consumer, ordered by sequence number. New messages
/// go to the back; requeued ones return to the position they were taken from.
#[derive(Debug, Default)]
pub struct ReadyQueue {
    messages: VecDeque<QueuedMessage>,
}

impl ReadyQueue {
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub fn push_back(&mut self, message: QueuedMessage) {
        self.messages.push_back(message);
    }

    pub fn pop_front(&mut self) -> Option<QueuedMessage> {
        self.messages.pop_front()
    }

    pub fn front(&self) -> Option<&QueuedMessage> {
        self.messages.front()
    }

    pub fn back(&self) -> Option<&QueuedMessage> {
        self.messages.back()
    }

    pub fn pop_back(&mut self) -> Option<QueuedMessage> {
        self.messages.pop_back()
    }

    /// Insert by sequence number. Requeues are usually of the oldest
    /// deliveries, so the search is short in practice.
    pub fn insert_in_order(&mut self, message: QueuedMessage) {
        let at = self.messages.partition_point(|m| m.seq < message.seq);
        self.messages.insert(at, message);
    }

    pub fn clear(&mut self) {
        self.messages.clear();
    }

    pub fn iter(&self) -> impl Iterator<Item = &QueuedMessage> {
        self.messages.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use crate::protocol::Properties;
    use bytes::Bytes;
    use std::sync::Arc;

    fn qm(seq: u64) -> QueuedMessage {
        QueuedMessage {
            seq,
            message: Arc::new(Message::new(
                Arc::from(""),
                Bytes::new(),
                Properties::default(),
                Bytes::new(),
            )),
            redelivered: false,
            expires_at: None,
        }
    }

    #[test]
    fn requeued_messages_return_to_their_position() {
        let mut q = ReadyQueue::default();
        for seq in [1, 3, 5] {
            q.push_back(qm(seq));
        }
        q.insert_in_order(qm(0));
        q.insert_in_order(qm(4));
        let order: Vec<u64> = q.iter().map(|m| m.seq).collect();
        assert_eq!(order, vec![0, 1, 3, 4, 5]);
    }
}
