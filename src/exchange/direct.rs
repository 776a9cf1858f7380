//! Direct routing: exact routing-key match through a hash map.

use std::collections::HashMap;

use super::Destination;

#[derive(Debug, Default)]
pub struct DirectRouter {
    by_key: HashMap<Box<[u8]>, Vec<Destination>>,
}

impl DirectRouter {
    pub fn add(&mut self, key: &str, destination: Destination) {
        self.by_key
            .entry(key.as_bytes().into())
            .or_default()
            .push(destination);
    }

    pub fn remove(&mut self, key: &str, destination: &Destination) {
        if let Some(dests) = self.by_key.get_mut(key.as_bytes()) {
            if let Some(i) = dests.iter().position(|d| d.same(destination)) {
                dests.remove(i);
            }
            if dests.is_empty() {
                self.by_key.remove(key.as_bytes());
            }
        }
    }

    pub fn route(&self, routing_key: &[u8], out: &mut dyn FnMut(&Destination)) {
        if let Some(dests) = self.by_key.get(routing_key) {
            dests.iter().for_each(out);
        }
    }
}
