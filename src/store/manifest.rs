//! The manifest: what the store held when the broker last stopped cleanly
//! (durable queues with their message counts and sequence ranges, and how
//! many durable exchanges and bindings), in `manifest.json` beside the
//! store's directory.
//!
//! It is written after the last flush of a clean shutdown and removed once
//! a start has checked it, so it only ever describes a store nothing has
//! written to since. A start that finds one compares the recovered store
//! with it: a store that holds less (a truncated or damaged file, a missing
//! one, a sled that recovered an empty database) is refused, naming the
//! data directory and what is missing, unless the operator accepts the
//! loss with `--accept-data-loss`. After a crash there is no manifest, and
//! a torn tail (the writes of the last unfinished flush) is normal.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One durable queue as the manifest records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueueEntry {
    pub vhost: String,
    pub name: String,
    pub id: u64,
    pub messages: u64,
    /// Lowest and highest sequence number stored (none when empty).
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub queues: Vec<QueueEntry>,
    pub exchanges: u64,
    pub bindings: u64,
}

/// Per queue id: message count and sequence range, from one pass over the
/// `messages` tree.
pub type Counts = HashMap<u64, (u64, u64, u64)>;

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("manifest.json")
}

/// Write the manifest atomically (temporary file, fsync, rename).
pub fn write(data_dir: &Path, manifest: &Manifest) -> std::io::Result<()> {
    let tmp = data_dir.join("manifest.json.tmp");
    let json = serde_json::to_vec_pretty(manifest).map_err(std::io::Error::other)?;
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&json)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path(data_dir))?;
    if let Ok(dir) = std::fs::File::open(data_dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Read the manifest, if a clean shutdown left one. An unreadable manifest
/// is an error: it cannot vouch for the store.
pub fn read(data_dir: &Path) -> Result<Option<Manifest>, String> {
    match std::fs::read(path(data_dir)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{} is unreadable: {e}", path(data_dir).display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path(data_dir).display())),
    }
}

/// The manifest has been checked: the store is written to from now on.
pub fn remove(data_dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path(data_dir)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// What the store holds, as found by the start.
#[derive(Debug, Default)]
pub struct Found {
    /// Recovered message count per (vhost, queue name, id).
    pub queues: HashMap<(String, String), (u64, u64)>,
    pub exchanges: u64,
    pub bindings: u64,
}

/// Everything the manifest recorded that the store no longer holds, one
/// line each; empty when nothing is missing.
pub fn missing(manifest: &Manifest, found: &Found) -> Vec<String> {
    let mut out = Vec::new();
    for q in &manifest.queues {
        let range = match (q.first_seq, q.last_seq) {
            (Some(a), Some(b)) => format!(" (sequence numbers {a}..={b})"),
            _ => String::new(),
        };
        match found.queues.get(&(q.vhost.clone(), q.name.clone())) {
            None => out.push(format!(
                "durable queue '{}' in vhost '{}' with {} messages{range} is missing",
                q.name, q.vhost, q.messages
            )),
            Some(&(id, n)) if id == q.id && n < q.messages => out.push(format!(
                "durable queue '{}' in vhost '{}' holds {n} of its {} messages{range}: {} lost",
                q.name,
                q.vhost,
                q.messages,
                q.messages - n
            )),
            Some(_) => {}
        }
    }
    if found.exchanges < manifest.exchanges {
        out.push(format!(
            "{} of {} durable exchanges are missing",
            manifest.exchanges - found.exchanges,
            manifest.exchanges
        ));
    }
    if found.bindings < manifest.bindings {
        out.push(format!(
            "{} of {} durable bindings are missing",
            manifest.bindings - found.bindings,
            manifest.bindings
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn less_than_recorded_is_missing_and_more_is_not() {
        let manifest = Manifest {
            queues: vec![
                QueueEntry {
                    vhost: "/".into(),
                    name: "a".into(),
                    id: 1,
                    messages: 10,
                    first_seq: Some(0),
                    last_seq: Some(9),
                },
                QueueEntry {
                    vhost: "/".into(),
                    name: "b".into(),
                    id: 2,
                    messages: 0,
                    first_seq: None,
                    last_seq: None,
                },
            ],
            exchanges: 2,
            bindings: 1,
        };
        let mut found = Found {
            exchanges: 3,
            bindings: 1,
            ..Found::default()
        };
        found.queues.insert(("/".into(), "a".into()), (1, 10));
        found.queues.insert(("/".into(), "b".into()), (2, 0));
        assert!(missing(&manifest, &found).is_empty());
        found.queues.insert(("/".into(), "a".into()), (1, 7));
        found.queues.remove(&("/".to_string(), "b".to_string()));
        found.exchanges = 1;
        let lines = missing(&manifest, &found);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].contains("holds 7 of its 10 messages"), "{lines:?}");
        assert!(lines[1].contains("'b'"), "{lines:?}");
    }
}
