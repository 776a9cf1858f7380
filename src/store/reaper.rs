//! Deleting settled messages off the delivery path.
//!
//! An ack only has to make sure the message is not delivered again by this
//! broker; its disk copy can go a little later. Deleting from sled costs
//! about as much as the rest of the ack and delivery together, so the
//! channel hands the keys to the reaper thread and moves on: the deletes
//! run on the other core while the queue keeps delivering.
//!
//! The cost of the delay is RabbitMQ's: a message acked just before a crash
//! can come back (redelivered) after the restart. A clean shutdown applies
//! every pending delete before the last flush.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use tracing::{error, warn};

/// Messages of one queue to delete, then the shared records whose last
/// reference they were (in that order, as a crash must never leave a
/// reference without its record).
struct Batch {
    queue: u64,
    keys: Vec<u64>,
    shared: Vec<u64>,
}

pub struct Reaper {
    /// The store's tree of queue messages.
    messages: sled::Tree,
    /// The store's tree of messages held by several queues.
    shared: sled::Tree,
    pending: Mutex<Vec<Batch>>,
    wake: Condvar,
    /// The thread is running and takes new work.
    running: AtomicBool,
    stop: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Reaper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reaper")
            .field("pending", &self.pending.lock().len())
            .finish()
    }
}

impl Reaper {
    /// Start the reaper thread. Without it (the thread cannot start),
    /// deletes run at once on the caller's thread.
    pub fn start(messages: sled::Tree, shared: sled::Tree) -> Arc<Reaper> {
        let reaper = Arc::new(Reaper {
            messages,
            shared,
            pending: Mutex::default(),
            wake: Condvar::new(),
            running: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        let worker = reaper.clone();
        match std::thread::Builder::new()
            .name("warren-reaper".into())
            .spawn(move || worker.run())
        {
            Ok(handle) => {
                *reaper.thread.lock() = Some(handle);
                reaper.running.store(true, Ordering::Release);
            }
            Err(e) => error!("cannot start the reaper thread: {e}"),
        }
        reaper
    }

    /// Delete the messages `keys` (sequence numbers) of queue `queue`, then
    /// the shared records `shared`, soon.
    pub fn delete(&self, queue: u64, keys: Vec<u64>, shared: Vec<u64>) {
        if keys.is_empty() && shared.is_empty() {
            return;
        }
        let batch = Batch {
            queue,
            keys,
            shared,
        };
        if !self.running.load(Ordering::Acquire) {
            self.apply(batch);
            return;
        }
        let mut pending = self.pending.lock();
        pending.push(batch);
        if pending.len() == 1 {
            self.wake.notify_one();
        }
    }

    fn run(&self) {
        loop {
            let batches = {
                let mut pending = self.pending.lock();
                while pending.is_empty() && !self.stop.load(Ordering::Acquire) {
                    self.wake.wait(&mut pending);
                }
                std::mem::take(&mut *pending)
            };
            if batches.is_empty() {
                return;
            }
            for batch in batches {
                self.apply(batch);
            }
        }
    }

    /// Apply every pending delete and stop the thread (before the last flush).
    pub fn stop(&self) {
        self.running.store(false, Ordering::Release);
        self.stop.store(true, Ordering::Release);
        {
            let _pending = self.pending.lock();
            self.wake.notify_one();
        }
        if let Some(handle) = self.thread.lock().take() {
            let _ = handle.join();
        }
        for batch in std::mem::take(&mut *self.pending.lock()) {
            self.apply(batch);
        }
    }

    /// One key at a time: a sled batch would take the tree's write lock and
    /// stall the reads that page messages in.
    fn apply(&self, batch: Batch) {
        for seq in batch.keys {
            // A key already gone (the queue was deleted meanwhile) is no error.
            match self.messages.remove(super::message_key(batch.queue, seq)) {
                Ok(_) => {}
                Err(e) => {
                    warn!("cannot delete a settled message: {e}");
                    // Keep the shared records: a reference may remain.
                    return;
                }
            }
        }
        for id in batch.shared {
            let _ = self.shared.remove(id.to_be_bytes());
        }
    }
}
