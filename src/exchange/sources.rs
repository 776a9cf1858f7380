//! The reverse of the binding table: for each destination, the exchanges
//! with bindings to it. Deleting a queue or an exchange finds the bindings
//! to remove here instead of asking every exchange in the virtual host.

use std::collections::HashMap;
use std::sync::Arc;

use super::Destination;

/// A destination as a map key, with [`Destination::same`]'s identity: a
/// queue by the object, an exchange by its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Queue(usize),
    Exchange(Arc<str>),
}

impl Key {
    fn of(destination: &Destination) -> Key {
        match destination {
            // The binding holds the queue, so its address is not reused
            // while the entry exists.
            Destination::Queue(q) => Key::Queue(Arc::as_ptr(q) as *const () as usize),
            Destination::Exchange(name) => Key::Exchange(name.clone()),
        }
    }
}

/// Source exchanges by destination, each with its count of bindings there.
#[derive(Debug, Default)]
pub struct Sources {
    by_destination: HashMap<Key, HashMap<Arc<str>, usize>>,
}

impl Sources {
    /// A binding from `source` to `destination` was added.
    pub fn bound(&mut self, source: &Arc<str>, destination: &Destination) {
        *self
            .by_destination
            .entry(Key::of(destination))
            .or_default()
            .entry(source.clone())
            .or_default() += 1;
    }

    /// `count` bindings from `source` to `destination` were removed.
    pub fn unbound(&mut self, source: &str, destination: &Destination, count: usize) {
        let key = Key::of(destination);
        let Some(sources) = self.by_destination.get_mut(&key) else {
            return;
        };
        if let Some(n) = sources.get_mut(source) {
            *n = n.saturating_sub(count);
            if *n == 0 {
                sources.remove(source);
            }
        }
        if sources.is_empty() {
            self.by_destination.remove(&key);
        }
    }

    /// Forget `destination` and return the exchanges that had bindings to it.
    pub fn take(&mut self, destination: &Destination) -> Vec<Arc<str>> {
        self.by_destination
            .remove(&Key::of(destination))
            .map(|sources| sources.into_keys().collect())
            .unwrap_or_default()
    }

    /// How many destinations have bindings to them.
    pub fn len(&self) -> usize {
        self.by_destination.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_destination.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_bindings_per_source_and_forgets_emptied_destinations() {
        let mut sources = Sources::default();
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let x = Destination::Exchange(Arc::from("x"));
        sources.bound(&a, &x);
        sources.bound(&a, &x);
        sources.bound(&b, &x);
        sources.unbound("a", &x, 1);
        sources.unbound("b", &x, 1);
        assert_eq!(sources.len(), 1);
        assert_eq!(sources.take(&x), vec![a.clone()]);
        assert!(sources.is_empty());
        sources.bound(&a, &x);
        sources.unbound("a", &x, 1);
        assert!(sources.is_empty());
    }
}
