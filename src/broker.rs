//! The broker: virtual hosts, users and the registry of live connections.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::auth::Users;
use crate::config::Config;
use crate::connection::handle::ConnectionHandle;
use crate::vhost::VHost;

#[derive(Debug)]
pub struct Broker {
    pub config: Config,
    pub users: Users,
    vhosts: RwLock<HashMap<String, Arc<VHost>>>,
    connections: Mutex<HashMap<u64, Arc<ConnectionHandle>>>,
    next_id: AtomicU64,
}

impl Broker {
    pub fn new(config: Config) -> Self {
        let users = Users::default();
        let guest_only_local = config.default_user == "guest" && !config.allow_remote_guest;
        users.add(&config.default_user, &config.default_pass, guest_only_local);
        let mut vhosts = HashMap::new();
        vhosts.insert("/".to_string(), Arc::new(VHost::new("/")));
        Broker {
            config,
            users,
            vhosts: RwLock::new(vhosts),
            connections: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }

    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.read().get(name).cloned()
    }

    /// A fresh connection id.
    pub fn next_connection_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn register(&self, handle: Arc<ConnectionHandle>) {
        self.connections.lock().insert(handle.id, handle);
    }

    pub fn deregister(&self, id: u64) {
        self.connections.lock().remove(&id);
    }

    pub fn connection_count(&self) -> usize {
        self.connections.lock().len()
    }

    /// The live connections.
    pub fn connections(&self) -> Vec<Arc<ConnectionHandle>> {
        self.connections.lock().values().cloned().collect()
    }
}
