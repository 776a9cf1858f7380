//! Limits on virtual hosts (`max-connections`, `max-queues`) and users
//! (`max-connections`, `max-channels`), and the count of a user's open
//! channels that `max-channels` is checked against.
//!
//! As in RabbitMQ, a limit that is absent or negative means no limit, and 0
//! allows nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::AccessError;

/// A limit of a virtual host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VHostLimit {
    MaxConnections,
    MaxQueues,
}

/// A limit of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UserLimit {
    MaxConnections,
    MaxChannels,
}

impl VHostLimit {
    pub const ALL: [VHostLimit; 2] = [VHostLimit::MaxConnections, VHostLimit::MaxQueues];

    /// RabbitMQ's name ("max-connections").
    pub fn name(self) -> &'static str {
        match self {
            VHostLimit::MaxConnections => "max-connections",
            VHostLimit::MaxQueues => "max-queues",
        }
    }

    /// The limit of a name; RabbitMQ's validation text for an unknown one.
    pub fn from_name(name: &str, value: i64) -> Result<Self, AccessError> {
        Self::ALL
            .into_iter()
            .find(|l| l.name() == name)
            .ok_or_else(|| unrecognised(name, value))
    }
}

impl UserLimit {
    pub const ALL: [UserLimit; 2] = [UserLimit::MaxConnections, UserLimit::MaxChannels];

    /// RabbitMQ's name ("max-channels").
    pub fn name(self) -> &'static str {
        match self {
            UserLimit::MaxConnections => "max-connections",
            UserLimit::MaxChannels => "max-channels",
        }
    }

    /// The limit of a name; RabbitMQ's validation text for an unknown one.
    pub fn from_name(name: &str, value: i64) -> Result<Self, AccessError> {
        Self::ALL
            .into_iter()
            .find(|l| l.name() == name)
            .ok_or_else(|| unrecognised(name, value))
    }
}

fn unrecognised(name: &str, value: i64) -> AccessError {
    AccessError::InvalidLimit(format!(
        "Unrecognised terms [{{<<\"{name}\">>,{value}}}] in limits"
    ))
}

/// The limits set on one virtual host or user, by limit. Values are kept
/// as set (a negative one is listed, and means no limit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits<K: Ord> {
    values: BTreeMap<K, i64>,
}

impl<K: Ord> Default for Limits<K> {
    fn default() -> Self {
        Limits {
            values: BTreeMap::new(),
        }
    }
}

pub type VHostLimits = Limits<VHostLimit>;
pub type UserLimits = Limits<UserLimit>;

impl<K: Ord + Copy> Limits<K> {
    /// The value set for `limit`, if any.
    pub fn get(&self, limit: K) -> Option<i64> {
        self.values.get(&limit).copied()
    }

    /// The enforced maximum: None when unset or negative.
    pub fn max(&self, limit: K) -> Option<u64> {
        self.get(limit).and_then(|v| u64::try_from(v).ok())
    }

    pub fn set(&mut self, limit: K, value: i64) {
        self.values.insert(limit, value);
    }

    pub fn clear(&mut self, limit: K) {
        self.values.remove(&limit);
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Every limit set, with its value.
    pub fn iter(&self) -> impl Iterator<Item = (K, i64)> + '_ {
        self.values.iter().map(|(k, v)| (*k, *v))
    }
}

impl VHostLimits {
    /// By RabbitMQ's names, as stored and as the HTTP API shows them.
    pub fn to_map(&self) -> BTreeMap<String, i64> {
        self.iter()
            .map(|(k, v)| (k.name().to_string(), v))
            .collect()
    }

    /// From RabbitMQ's names; unknown names are refused.
    pub fn from_map(map: &BTreeMap<String, i64>) -> Result<Self, AccessError> {
        let mut limits = Self::default();
        for (name, value) in map {
            limits.set(VHostLimit::from_name(name, *value)?, *value);
        }
        Ok(limits)
    }
}

impl UserLimits {
    /// By RabbitMQ's names, as stored and as the HTTP API shows them.
    pub fn to_map(&self) -> BTreeMap<String, i64> {
        self.iter()
            .map(|(k, v)| (k.name().to_string(), v))
            .collect()
    }

    /// From RabbitMQ's names; unknown names are refused.
    pub fn from_map(map: &BTreeMap<String, i64>) -> Result<Self, AccessError> {
        let mut limits = Self::default();
        for (name, value) in map {
            limits.set(UserLimit::from_name(name, *value)?, *value);
        }
        Ok(limits)
    }
}

/// Whether one more of something counted at `count` stays within `max`:
/// the limit reached, if not.
pub fn exceeded(max: Option<u64>, count: usize) -> Option<u64> {
    max.filter(|&m| count as u64 >= m)
}

/// One open channel, counted against its user's `max-channels` for as long
/// as it lives: dropping the slot (however the channel ends) uncounts it.
#[derive(Debug)]
pub struct ChannelSlot {
    count: Arc<AtomicUsize>,
}

impl ChannelSlot {
    /// Count one more channel of the user whose channels `count` counts,
    /// unless that reaches `max`; the limit reached otherwise.
    pub fn take(count: &Arc<AtomicUsize>, max: Option<u64>) -> Result<ChannelSlot, u64> {
        let before = count.fetch_add(1, Ordering::AcqRel);
        if let Some(limit) = exceeded(max, before) {
            count.fetch_sub(1, Ordering::AcqRel);
            return Err(limit);
        }
        Ok(ChannelSlot {
            count: count.clone(),
        })
    }
}

impl Drop for ChannelSlot {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_and_absent_limits_are_no_limits() {
        let mut limits = VHostLimits::default();
        assert_eq!(limits.max(VHostLimit::MaxQueues), None);
        limits.set(VHostLimit::MaxQueues, -1);
        assert_eq!(limits.max(VHostLimit::MaxQueues), None);
        assert_eq!(limits.get(VHostLimit::MaxQueues), Some(-1));
        limits.set(VHostLimit::MaxQueues, 0);
        assert_eq!(exceeded(limits.max(VHostLimit::MaxQueues), 0), Some(0));
        limits.set(VHostLimit::MaxQueues, 2);
        assert_eq!(exceeded(limits.max(VHostLimit::MaxQueues), 1), None);
        assert_eq!(exceeded(limits.max(VHostLimit::MaxQueues), 2), Some(2));
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        let map = BTreeMap::from([("max-channels".to_string(), 4)]);
        let limits = UserLimits::from_map(&map).unwrap();
        assert_eq!(limits.get(UserLimit::MaxChannels), Some(4));
        assert_eq!(limits.to_map(), map);
        let bogus = BTreeMap::from([("max-bogus".to_string(), 3)]);
        assert_eq!(
            VHostLimits::from_map(&bogus).unwrap_err().to_string(),
            "Validation failed\n\nUnrecognised terms [{<<\"max-bogus\">>,3}] in limits\n"
        );
    }

    #[test]
    fn channel_slots_count_while_they_live() {
        let count = Arc::new(AtomicUsize::new(0));
        let a = ChannelSlot::take(&count, Some(2)).unwrap();
        let b = ChannelSlot::take(&count, Some(2)).unwrap();
        assert_eq!(ChannelSlot::take(&count, Some(2)).unwrap_err(), 2);
        drop(a);
        let c = ChannelSlot::take(&count, Some(2)).unwrap();
        assert_eq!(count.load(Ordering::Relaxed), 2);
        drop((b, c));
        assert_eq!(count.load(Ordering::Relaxed), 0);
        assert!(ChannelSlot::take(&count, Some(0)).is_err());
    }
}
