//! The broker: virtual hosts, users, the store, and the registry of live
//! connections. Opening a broker recovers everything durable from disk.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use tracing::{info, warn};

use crate::alarm::Alarms;
use crate::auth::Users;
use crate::client::handle::{ConnEvent, ConnectionHandle, shutdown_error};
use crate::config::Config;
use crate::store::{Store, StoreError};
use crate::timer::{TimerEvents, Timers};
use crate::vhost::VHost;

#[derive(Debug)]
pub struct Broker {
    pub config: Config,
    pub users: Users,
    pub store: Arc<Store>,
    pub alarms: Arc<Alarms>,
    pub timers: Timers,
    /// Taken by the server, which runs the timers.
    timer_events: Mutex<Option<TimerEvents>>,
    vhosts: RwLock<HashMap<String, Arc<VHost>>>,
    connections: Mutex<Registry>,
    next_id: AtomicU64,
}

/// The open connections, and whether the broker is shutting down (a
/// connection that opens after that is told to close at once).
#[derive(Debug, Default)]
struct Registry {
    open: HashMap<u64, Arc<ConnectionHandle>>,
    closing: bool,
}

impl Broker {
    /// Open the store in the data directory and rebuild vhosts, exchanges,
    /// queues (with their messages, in order) and bindings from it.
    pub fn open(config: Config) -> Result<Broker, StoreError> {
        let started = Instant::now();
        let store = Store::open(
            &config.data_dir,
            config.sync,
            config.store_cache_mb.saturating_mul(1 << 20),
        )?;
        let topology = store.load_topology()?;
        let users = Users::default();
        let guest_only_local = config.default_user == "guest" && !config.allow_remote_guest;
        users.add(&config.default_user, &config.default_pass, guest_only_local);
        let memory = config.queue_memory_messages;
        let (timers, timer_events) = Timers::new();
        let mut vhosts: HashMap<String, Arc<VHost>> = HashMap::new();
        let mut names = topology.vhosts.clone();
        if !names.iter().any(|n| n == "/") {
            store.put_vhost("/");
            names.push("/".to_string());
        }
        for name in names {
            let vhost = VHost::new(&name, Some(store.clone()), memory, Some(timers.clone()));
            vhosts.insert(name, vhost);
        }
        for record in &topology.exchanges {
            match vhosts.get(&record.vhost) {
                Some(vhost) => vhost.restore_exchange(record),
                None => warn!(
                    "skipping exchange '{}' of unknown vhost '{}'",
                    record.name, record.vhost
                ),
            }
        }
        let mut shared = HashMap::new();
        let (mut queues, mut messages) = (0usize, 0usize);
        for record in &topology.queues {
            let Some(vhost) = vhosts.get(&record.vhost) else {
                warn!(
                    "skipping queue '{}' of unknown vhost '{}'",
                    record.name, record.vhost
                );
                continue;
            };
            let queue = vhost.restore_queue(record, &store)?;
            let recovered = queue.recover(&mut shared)?;
            queues += 1;
            messages += recovered.messages;
        }
        for record in &topology.bindings {
            let restored = vhosts
                .get(&record.vhost)
                .is_some_and(|vhost| vhost.restore_binding(record));
            if !restored {
                warn!(
                    "skipping binding from '{}' to {} '{}': an end is missing",
                    record.source, record.destination_type, record.destination
                );
            }
        }
        let orphans = store.delete_unreferenced_shared(&shared);
        if queues > 0 || orphans > 0 {
            info!(
                "recovered {queues} durable queues with {messages} messages from {} in {:?}",
                store.path().display(),
                started.elapsed()
            );
        }
        Ok(Broker {
            timers,
            timer_events: Mutex::new(Some(timer_events)),
            alarms: Arc::new(Alarms::new()),
            config,
            users,
            store,
            vhosts: RwLock::new(vhosts),
            connections: Mutex::new(Registry::default()),
            next_id: AtomicU64::new(1),
        })
    }

    /// The timers' event stream (taken once, by whoever runs [`crate::timer::run`]).
    pub fn take_timer_events(&self) -> Option<TimerEvents> {
        self.timer_events.lock().take()
    }

    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.read().get(name).cloned()
    }

    /// A fresh connection id.
    pub fn next_connection_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A connection that completed `connection.open`. Once the broker is
    /// shutting down, it is told to close straight away.
    pub fn register(&self, handle: Arc<ConnectionHandle>) {
        let mut registry = self.connections.lock();
        if registry.closing {
            handle.send(ConnEvent::Close(shutdown_error()));
        }
        registry.open.insert(handle.id, handle);
    }

    pub fn deregister(&self, id: u64) {
        self.connections.lock().open.remove(&id);
    }

    pub fn connection_count(&self) -> usize {
        self.connections.lock().open.len()
    }

    /// The live connections.
    pub fn connections(&self) -> Vec<Arc<ConnectionHandle>> {
        self.connections.lock().open.values().cloned().collect()
    }

    /// Close every open connection, and any that opens later, with 320
    /// CONNECTION_FORCED (connections still in the handshake watch the
    /// server's shutdown signal instead).
    pub fn close_connections(&self) {
        let mut registry = self.connections.lock();
        registry.closing = true;
        for handle in registry.open.values() {
            handle.send(ConnEvent::Close(shutdown_error()));
        }
    }

    /// Tell the open connections that the alarms changed, so that blocked
    /// publishers are read again once they clear. (A connection checks the
    /// alarms itself before it blocks, so one that opens later misses
    /// nothing.)
    pub fn alarms_changed(&self) {
        for handle in self.connections.lock().open.values() {
            handle.send(ConnEvent::AlarmsChanged);
        }
    }
}
