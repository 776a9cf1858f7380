//! One task that wakes things up at their deadlines: queues whose messages
//! expire (TTL) or which expire themselves (`x-expires`), and delayed-message
//! exchanges whose messages come due.
//!
//! A target is held weakly, so a deleted queue simply never fires. Firing
//! returns the target's next deadline, if any. Targets schedule themselves
//! only when a new deadline is earlier than the one already armed, so a
//! steady stream of messages with the same TTL costs no scheduling at all.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::util::now_millis;

/// Something with deadlines.
pub trait Timed: Send + Sync {
    /// Handle everything due at `now` (milliseconds since the epoch);
    /// return the next deadline, if any.
    fn fire(self: Arc<Self>, now: u64) -> Option<u64>;
}

struct Entry {
    at: u64,
    order: u64,
    target: Weak<dyn Timed>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

/// The receiving end of the timers: what [`run`] consumes.
pub type TimerEvents = UnboundedReceiver<(u64, Weak<dyn Timed>)>;

/// A handle to schedule wake-ups. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Timers {
    tx: UnboundedSender<(u64, Weak<dyn Timed>)>,
}

impl std::fmt::Debug for dyn Timed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Timed")
    }
}

impl Timers {
    /// A handle and the receiving end for [`run`].
    pub fn new() -> (Timers, TimerEvents) {
        let (tx, rx) = unbounded_channel();
        (Timers { tx }, rx)
    }

    /// Call `target.fire` at `at` (or soon after).
    pub fn schedule(&self, at: u64, target: Weak<dyn Timed>) {
        let _ = self.tx.send((at, target));
    }
}

/// Run the timers until every handle is dropped.
pub async fn run(mut rx: TimerEvents) {
    let mut heap: BinaryHeap<Reverse<Entry>> = BinaryHeap::new();
    let mut order = 0u64;
    loop {
        let now = now_millis();
        while heap.peek().is_some_and(|Reverse(e)| e.at <= now) {
            let Some(Reverse(entry)) = heap.pop() else {
                break;
            };
            if let Some(target) = entry.target.upgrade() {
                let weak = entry.target.clone();
                if let Some(next) = target.fire(now) {
                    order += 1;
                    heap.push(Reverse(Entry {
                        at: next,
                        order,
                        target: weak,
                    }));
                }
            }
        }
        let wait = heap
            .peek()
            .map(|Reverse(e)| Duration::from_millis(e.at.saturating_sub(now_millis()).max(1)))
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            received = rx.recv() => match received {
                Some((at, target)) => {
                    order += 1;
                    heap.push(Reverse(Entry { at, order, target }));
                }
                None => return,
            },
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct Counter(AtomicU32);

    impl Timed for Counter {
        fn fire(self: Arc<Self>, now: u64) -> Option<u64> {
            let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            (n < 3).then_some(now + 5)
        }
    }

    #[tokio::test]
    async fn fires_and_reschedules_until_done() {
        let (timers, rx) = Timers::new();
        let task = tokio::spawn(run(rx));
        let counter = Arc::new(Counter(AtomicU32::new(0)));
        let weak: Weak<dyn Timed> = Arc::downgrade(&counter) as Weak<dyn Timed>;
        timers.schedule(now_millis() + 10, weak);
        for _ in 0..100 {
            if counter.0.load(Ordering::SeqCst) == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(counter.0.load(Ordering::SeqCst), 3);
        drop(timers);
        let _ = task.await;
    }
}
