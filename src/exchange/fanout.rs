//! Fanout routing: every binding, whatever the key.

use super::Destination;

#[derive(Debug, Default)]
pub struct FanoutRouter {
    destinations: Vec<Destination>,
}

impl FanoutRouter {
    pub fn add(&mut self, destination: Destination) {
        self.destinations.push(destination);
    }

    pub fn remove(&mut self, destination: &Destination) {
        if let Some(i) = self.destinations.iter().position(|d| d.same(destination)) {
            self.destinations.remove(i);
        }
    }

    pub fn route(&self, out: &mut dyn FnMut(&Destination)) {
        self.destinations.iter().for_each(out);
    }
}
