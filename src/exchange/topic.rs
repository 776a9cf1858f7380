//! Topic routing: binding keys in a trie of words, matched without scanning
//! every binding.
//!
//! Keys are split on '.', so "" has no words and "a..b" has an empty middle
//! word, exactly as RabbitMQ splits them. `*` matches one word and `#` zero or
//! more. Matching walks the trie as a set of states, one step per word of the
//! routing key, so its cost is bounded by (words x trie nodes) no matter how
//! many `#` a binding stacks up (a recursive matcher is exponential there).

use std::collections::HashMap;

use super::Destination;

#[derive(Debug, Default)]
pub struct TopicRouter {
    nodes: Vec<Node>,
    free: Vec<usize>,
}

#[derive(Debug, Default)]
struct Node {
    words: HashMap<Box<[u8]>, usize>,
    star: Option<usize>,
    hash: Option<usize>,
    /// Reached through a `#` edge: may absorb any number of words.
    is_hash: bool,
    destinations: Vec<Destination>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.words.is_empty()
            && self.star.is_none()
            && self.hash.is_none()
            && self.destinations.is_empty()
    }
}

const ROOT: usize = 0;

/// Split a key into words the way RabbitMQ does.
fn split(key: &[u8]) -> Vec<&[u8]> {
    if key.is_empty() {
        return Vec::new();
    }
    key.split(|&b| b == b'.').collect()
}

impl TopicRouter {
    pub fn new() -> Self {
        TopicRouter {
            nodes: vec![Node::default()],
            free: Vec::new(),
        }
    }

    fn alloc(&mut self, is_hash: bool) -> usize {
        let node = Node {
            is_hash,
            ..Node::default()
        };
        match self.free.pop() {
            Some(i) => {
                self.nodes[i] = node;
                i
            }
            None => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        }
    }

    fn child(&self, node: usize, word: &[u8]) -> Option<usize> {
        let n = &self.nodes[node];
        match word {
            b"*" => n.star,
            b"#" => n.hash,
            w => n.words.get(w).copied(),
        }
    }

    pub fn add(&mut self, key: &str, destination: Destination) {
        let mut node = ROOT;
        for word in split(key.as_bytes()) {
            node = match self.child(node, word) {
                Some(next) => next,
                None => {
                    let next = self.alloc(word == b"#");
                    let n = &mut self.nodes[node];
                    match word {
                        b"*" => n.star = Some(next),
                        b"#" => n.hash = Some(next),
                        w => {
                            n.words.insert(w.into(), next);
                        }
                    }
                    next
                }
            };
        }
        self.nodes[node].destinations.push(destination);
    }

    pub fn remove(&mut self, key: &str, destination: &Destination) {
        let words = split(key.as_bytes());
        let mut path = vec![ROOT];
        for word in &words {
            match self.child(*path.last().unwrap_or(&ROOT), word) {
                Some(next) => path.push(next),
                None => return,
            }
        }
        let Some(&last) = path.last() else { return };
        let dests = &mut self.nodes[last].destinations;
        if let Some(i) = dests.iter().position(|d| d.same(destination)) {
            dests.remove(i);
        }
        // Prune nodes left with nothing under them, leaf first.
        for depth in (1..path.len()).rev() {
            let node = path[depth];
            if !self.nodes[node].is_empty() {
                break;
            }
            let parent = &mut self.nodes[path[depth - 1]];
            match words[depth - 1] {
                b"*" => parent.star = None,
                b"#" => parent.hash = None,
                w => {
                    parent.words.remove(w);
                }
            }
            self.free.push(node);
        }
    }

    /// Add `node` and everything reachable from it through `#` edges (a `#`
    /// may match zero words) to `states`, once each.
    fn add_state(&self, node: usize, states: &mut Vec<usize>, seen: &mut [bool]) {
        let mut next = Some(node);
        while let Some(n) = next {
            if seen[n] {
                return;
            }
            seen[n] = true;
            states.push(n);
            next = self.nodes[n].hash;
        }
    }

    pub fn route(&self, routing_key: &[u8], out: &mut dyn FnMut(&Destination)) {
        let mut seen = vec![false; self.nodes.len()];
        let mut states = Vec::new();
        self.add_state(ROOT, &mut states, &mut seen);
        for word in split(routing_key) {
            seen.iter_mut().for_each(|s| *s = false);
            let mut next = Vec::with_capacity(states.len());
            for &state in &states {
                let node = &self.nodes[state];
                if let Some(child) = node.words.get(word) {
                    self.add_state(*child, &mut next, &mut seen);
                }
                if let Some(child) = node.star {
                    self.add_state(child, &mut next, &mut seen);
                }
                if node.is_hash {
                    self.add_state(state, &mut next, &mut seen);
                }
            }
            if next.is_empty() {
                return;
            }
            states = next;
        }
        for state in states {
            for destination in &self.nodes[state].destinations {
                out(destination);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn matches(bindings: &[&str], key: &str) -> Vec<String> {
        let mut router = TopicRouter::new();
        for b in bindings {
            router.add(b, Destination::Exchange(Arc::from(*b)));
        }
        let mut out = Vec::new();
        router.route(key.as_bytes(), &mut |d| out.push(d.name().to_string()));
        out.sort();
        out
    }

    #[test]
    fn star_matches_exactly_one_word() {
        assert_eq!(matches(&["a.*.c"], "a.b.c"), vec!["a.*.c"]);
        assert!(matches(&["a.*.c"], "a.c").is_empty());
        assert!(matches(&["*"], "").is_empty());
        assert_eq!(matches(&["*"], "x"), vec!["*"]);
        assert_eq!(matches(&["a.*"], "a."), vec!["a.*"]);
    }

    #[test]
    fn hash_matches_zero_or_more_words() {
        assert_eq!(matches(&["#"], ""), vec!["#"]);
        assert_eq!(matches(&["#"], "a.b.c"), vec!["#"]);
        assert_eq!(matches(&["a.#"], "a"), vec!["a.#"]);
        assert_eq!(matches(&["a.#"], "a.b.c"), vec!["a.#"]);
        assert_eq!(matches(&["#.c"], "c"), vec!["#.c"]);
        assert_eq!(matches(&["a.#.c"], "a.c"), vec!["a.#.c"]);
        assert_eq!(matches(&["a.#.c"], "a.x.y.c"), vec!["a.#.c"]);
        assert!(matches(&["a.#.c"], "a.x.y").is_empty());
        assert_eq!(matches(&["#.#"], "a"), vec!["#.#"]);
        assert_eq!(matches(&["#.*"], "a"), vec!["#.*"]);
        assert!(matches(&["#.*"], "").is_empty());
    }

    #[test]
    fn empty_words_are_words() {
        assert_eq!(matches(&["a..b"], "a..b"), vec!["a..b"]);
        assert_eq!(matches(&["a.*.b"], "a..b"), vec!["a.*.b"]);
        assert_eq!(matches(&[""], ""), vec![""]);
        assert!(matches(&[""], "a").is_empty());
        assert_eq!(matches(&["#"], ".."), vec!["#"]);
        assert_eq!(matches(&["*.*.*"], ".."), vec!["*.*.*"]);
    }

    #[test]
    fn many_hashes_stay_fast() {
        let pattern = vec!["#"; 40].join(".") + ".z";
        let key = vec!["a"; 200].join(".");
        assert!(matches(&[&pattern], &key).is_empty());
        assert_eq!(matches(&[&pattern], &(key + ".z")).len(), 1);
    }

    #[test]
    fn removal_prunes_and_keeps_others() {
        let mut router = TopicRouter::new();
        let a = Destination::Exchange(Arc::from("a"));
        let b = Destination::Exchange(Arc::from("b"));
        router.add("x.#", a.clone());
        router.add("x.y", b.clone());
        router.remove("x.#", &a);
        let mut out = Vec::new();
        router.route(b"x.y", &mut |d| out.push(d.name().to_string()));
        assert_eq!(out, vec!["b"]);
        router.remove("x.y", &b);
        assert_eq!(router.nodes.len() - router.free.len(), 1);
    }
}
