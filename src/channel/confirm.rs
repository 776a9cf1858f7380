//! Publisher confirms: sequence numbers for a channel in confirm mode, the
//! wait for the disk before a persistent message is confirmed, and the
//! coalescing of confirmations into as few `basic.ack` frames as possible.
//!
//! A stored message is first `Unsynced`; at the end of the batch of input it
//! arrived in, one sync ticket is requested for all of them (group commit),
//! and they wait as `Durable(ticket)` until the flusher reaches it.

use std::collections::VecDeque;

use crate::metrics::counters;
use crate::protocol::FrameBuf;
use crate::protocol::method::put_confirm_args;

/// The outcome of one published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ack,
    Nack,
    /// Written to the store; its sync ticket is requested at the end of the batch.
    Unsynced,
    /// Waiting for the flush that makes this ticket durable.
    Durable(u64),
}

/// Confirm-mode bookkeeping of one channel.
#[derive(Debug)]
pub struct Confirms {
    next_seq: u64,
    /// Unsent confirmations, in sequence order.
    outstanding: VecDeque<(u64, Outcome)>,
}

impl Default for Confirms {
    fn default() -> Self {
        Confirms {
            next_seq: 1,
            outstanding: VecDeque::new(),
        }
    }
}

impl Confirms {
    /// Number the next publish (numbers start at 1).
    pub fn next_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Record the outcome of publish `seq`.
    pub fn record(&mut self, seq: u64, outcome: Outcome) {
        self.outstanding.push_back((seq, outcome));
    }

    /// Settle a pending publish.
    pub fn settle(&mut self, seq: u64, outcome: Outcome) {
        if let Ok(i) = self.outstanding.binary_search_by_key(&seq, |(s, _)| *s) {
            self.outstanding[i].1 = outcome;
        }
    }

    pub fn has_unsent(&self) -> bool {
        !self.outstanding.is_empty()
    }

    /// Give every stored-but-unsynced publish the ticket `request` returns
    /// (called once, for all of them, only if there are any).
    pub fn request_sync(&mut self, request: impl FnOnce() -> u64) {
        if !self
            .outstanding
            .iter()
            .rev()
            .any(|(_, o)| *o == Outcome::Unsynced)
        {
            return;
        }
        let ticket = request();
        for (_, outcome) in self.outstanding.iter_mut() {
            if *outcome == Outcome::Unsynced {
                *outcome = Outcome::Durable(ticket);
            }
        }
    }

    /// Whether some publish waits for the disk.
    pub fn waiting_for_disk(&self) -> bool {
        self.outstanding
            .iter()
            .any(|(_, o)| matches!(o, Outcome::Durable(_)))
    }

    /// Settle every publish whose ticket the flusher reached: acked, or
    /// nacked when `failed` says that flush failed.
    pub fn settle_durable(&mut self, durable: u64, failed: impl Fn(u64) -> bool) {
        for (_, outcome) in self.outstanding.iter_mut() {
            match outcome {
                Outcome::Durable(t) if *t <= durable => {
                    *outcome = if failed(*t) {
                        Outcome::Nack
                    } else {
                        Outcome::Ack
                    }
                }
                Outcome::Durable(_) | Outcome::Unsynced => break,
                _ => {}
            }
        }
    }

    /// Write the confirmations that can go out now. Settled publishes at the
    /// front go in runs: a run of several acks (or nacks) is one frame with
    /// `multiple` set, which is valid because everything before it is
    /// already confirmed.
    pub fn flush(&mut self, channel: u16, out: &mut FrameBuf) {
        while let Some(&(first, outcome)) = self.outstanding.front() {
            if matches!(outcome, Outcome::Unsynced | Outcome::Durable(_)) {
                return;
            }
            let mut last = first;
            let mut run = 1;
            self.outstanding.pop_front();
            while let Some(&(seq, next)) = self.outstanding.front() {
                if next != outcome {
                    break;
                }
                last = seq;
                run += 1;
                self.outstanding.pop_front();
            }
            if outcome == Outcome::Ack {
                // Once per frame, not per message.
                counters::CONFIRMED.add(run);
            }
            let method_id = if outcome == Outcome::Ack { 80 } else { 120 };
            let multiple = last != first;
            // basic.nack's second bit (requeue) stays clear.
            out.put_method(channel, 60, method_id, |b| {
                put_confirm_args(b, last, multiple)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::FrameCodec;
    use bytes::BytesMut;
    use tokio_util::codec::Decoder;

    fn sent(confirms: &mut Confirms) -> Vec<(u16, u64, bool)> {
        let mut out = FrameBuf::new();
        confirms.flush(1, &mut out);
        let mut buf = BytesMut::from(&out.take().concat()[..]);
        let mut codec = FrameCodec::new(131072);
        let mut frames = vec![];
        while let Some(f) = codec.decode(&mut buf).unwrap() {
            let p = &f.payload;
            let method = u16::from_be_bytes([p[2], p[3]]);
            let tag = u64::from_be_bytes(p[4..12].try_into().unwrap());
            frames.push((method, tag, p[12] & 1 == 1));
        }
        frames
    }

    #[test]
    fn consecutive_acks_become_one_multiple_ack() {
        let mut c = Confirms::default();
        for _ in 0..3 {
            let seq = c.next_seq();
            c.record(seq, Outcome::Ack);
        }
        assert_eq!(sent(&mut c), vec![(80, 3, true)]);
        let seq = c.next_seq();
        c.record(seq, Outcome::Ack);
        assert_eq!(sent(&mut c), vec![(80, 4, false)]);
    }

    #[test]
    fn nacks_split_runs_and_pending_holds_back() {
        let mut c = Confirms::default();
        c.record(1, Outcome::Ack);
        c.record(2, Outcome::Nack);
        c.record(3, Outcome::Unsynced);
        c.record(4, Outcome::Ack);
        assert_eq!(sent(&mut c), vec![(80, 1, false), (120, 2, false)]);
        c.settle(3, Outcome::Ack);
        assert_eq!(sent(&mut c), vec![(80, 4, true)]);
    }

    #[test]
    fn stored_publishes_wait_for_their_flush() {
        let mut c = Confirms::default();
        c.record(1, Outcome::Unsynced);
        c.record(2, Outcome::Unsynced);
        c.request_sync(|| 7);
        assert!(c.waiting_for_disk());
        c.record(3, Outcome::Unsynced);
        c.request_sync(|| 8);
        assert!(sent(&mut c).is_empty());
        c.settle_durable(7, |_| false);
        assert_eq!(sent(&mut c), vec![(80, 2, true)]);
        c.settle_durable(8, |_| false);
        assert_eq!(sent(&mut c), vec![(80, 3, false)]);
        assert!(!c.waiting_for_disk());
    }

    #[test]
    fn publishes_whose_flush_failed_are_nacked() {
        let mut c = Confirms::default();
        c.record(1, Outcome::Unsynced);
        c.request_sync(|| 4);
        c.record(2, Outcome::Unsynced);
        c.request_sync(|| 5);
        c.settle_durable(5, |t| t == 4);
        assert_eq!(sent(&mut c), vec![(120, 1, false), (80, 2, false)]);
    }
}
