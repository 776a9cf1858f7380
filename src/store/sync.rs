//! Group commit: one flusher thread makes every write registered before a
//! flush durable with that flush.
//!
//! A writer inserts into sled, then calls [`Syncer::request`] and gets a
//! ticket. The flusher thread loops: take the highest ticket issued so far,
//! flush sled to disk, publish that ticket as durable. Every write whose
//! ticket is at most the durable one is on disk. While a flush runs, new
//! requests pile up and the next flush covers them all, so confirm
//! throughput grows with the number of publishers instead of paying one
//! fsync per message.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;
use tracing::error;

#[derive(Debug)]
pub struct Syncer {
    /// Highest ticket handed out.
    requested: AtomicU64,
    durable: watch::Sender<u64>,
    wake: Mutex<()>,
    wake_cv: Condvar,
    stop: AtomicBool,
    /// False with `--sync off`: every ticket is durable at once.
    enabled: bool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Runs on the flusher thread before each flush; false when something it
/// had to make durable (a stream's segment) failed, which keeps the ticket
/// pending.
pub type BeforeFlush = Box<dyn Fn() -> bool + Send + Sync>;

impl Syncer {
    /// Start the flusher thread for `db`.
    pub fn start(db: sled::Db, enabled: bool, before_flush: BeforeFlush) -> Arc<Syncer> {
        let (durable, _) = watch::channel(0);
        let syncer = Arc::new(Syncer {
            requested: AtomicU64::new(0),
            durable,
            wake: Mutex::new(()),
            wake_cv: Condvar::new(),
            stop: AtomicBool::new(false),
            enabled,
            thread: Mutex::new(None),
        });
        if enabled {
            let worker = syncer.clone();
            let handle = std::thread::Builder::new()
                .name("warren-sync".into())
                .spawn(move || worker.run(db, before_flush));
            match handle {
                Ok(h) => *syncer.thread.lock() = Some(h),
                Err(e) => error!("cannot start the sync thread: {e}"),
            }
        }
        syncer
    }

    /// Register writes made so far; the returned ticket is durable once
    /// [`Syncer::durable`] reaches it.
    pub fn request(&self) -> u64 {
        if !self.enabled {
            return 0;
        }
        let ticket = self.requested.fetch_add(1, Ordering::AcqRel) + 1;
        let _guard = self.wake.lock();
        self.wake_cv.notify_one();
        ticket
    }

    /// Whether flushes wait for the disk (false with `--sync off`).
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The highest durable ticket (everything, without syncing).
    pub fn durable(&self) -> u64 {
        if !self.enabled {
            return u64::MAX;
        }
        *self.durable.borrow()
    }

    pub fn is_durable(&self, ticket: u64) -> bool {
        ticket == 0 || self.durable() >= ticket
    }

    /// A receiver that changes whenever a flush completes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.durable.subscribe()
    }

    /// Wait until `ticket` is durable.
    pub async fn wait(&self, ticket: u64) {
        if self.is_durable(ticket) {
            return;
        }
        let mut rx = self.subscribe();
        let _ = rx.wait_for(|d| *d >= ticket).await;
    }

    fn run(&self, db: sled::Db, before_flush: BeforeFlush) {
        loop {
            {
                let mut guard = self.wake.lock();
                while self.requested.load(Ordering::Acquire) <= self.durable()
                    && !self.stop.load(Ordering::Acquire)
                {
                    self.wake_cv.wait(&mut guard);
                }
            }
            let target = self.requested.load(Ordering::Acquire);
            if !before_flush() {
                // Already logged; confirms stay pending.
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
            if let Err(e) = db.flush() {
                // Confirms stay pending rather than lie about durability.
                error!("flushing the store failed: {e}");
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
            self.durable.send_replace(target);
            if self.stop.load(Ordering::Acquire) && self.requested.load(Ordering::Acquire) <= target
            {
                return;
            }
        }
    }

    /// Flush what is pending and stop the thread.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        {
            let _guard = self.wake.lock();
            self.wake_cv.notify_one();
        }
        if let Some(handle) = self.thread.lock().take() {
            let _ = handle.join();
        }
    }
}
