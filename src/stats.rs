//! Message statistics: the counters the management API and its rates read.
//!
//! Counting never takes a lock per message. A channel's counters are
//! atomics written by its own connection task (and by queues delivering to
//! it), so each is a relaxed add on a cache line that task already owns; a
//! queue counts under the queue lock it holds anyway (in `queue`); an
//! exchange counts with one relaxed add per routed publish. Readers add the
//! live counters up when asked: the broker's totals are the sum of its open
//! channels plus what closed channels left in [`Totals`].
//!
//! Rates are not kept per message either: a sampler walks the counters
//! every few seconds and keeps, per object, the last sample and the rate
//! since the one before ([`RateTable`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

/// How often the sampler takes the counters for rates.
pub const SAMPLE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// A monotonic counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    #[inline]
    pub fn incr(&self) {
        self.add(1);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// RabbitMQ's message statistics of a channel, of a vhost and of the
/// broker, in its field names.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MessageStats {
    pub publish: u64,
    pub confirm: u64,
    pub return_unroutable: u64,
    pub drop_unroutable: u64,
    pub deliver: u64,
    pub deliver_no_ack: u64,
    pub get: u64,
    pub get_no_ack: u64,
    pub get_empty: u64,
    pub ack: u64,
    pub redeliver: u64,
}

impl MessageStats {
    /// The fields, by RabbitMQ's names, with `deliver_get` (every
    /// delivery and get, with or without ack) after `get_no_ack`.
    pub fn fields(&self) -> [(&'static str, u64); 12] {
        [
            ("publish", self.publish),
            ("confirm", self.confirm),
            ("return_unroutable", self.return_unroutable),
            ("drop_unroutable", self.drop_unroutable),
            ("deliver", self.deliver),
            ("deliver_no_ack", self.deliver_no_ack),
            ("get", self.get),
            ("get_no_ack", self.get_no_ack),
            ("deliver_get", self.deliver_get()),
            ("get_empty", self.get_empty),
            ("ack", self.ack),
            ("redeliver", self.redeliver),
        ]
    }

    pub fn deliver_get(&self) -> u64 {
        self.deliver + self.deliver_no_ack + self.get + self.get_no_ack
    }

    pub fn add(&mut self, other: &MessageStats) {
        self.publish += other.publish;
        self.confirm += other.confirm;
        self.return_unroutable += other.return_unroutable;
        self.drop_unroutable += other.drop_unroutable;
        self.deliver += other.deliver;
        self.deliver_no_ack += other.deliver_no_ack;
        self.get += other.get;
        self.get_no_ack += other.get_no_ack;
        self.get_empty += other.get_empty;
        self.ack += other.ack;
        self.redeliver += other.redeliver;
    }
}

/// What closed channels counted, kept so the totals never go back.
#[derive(Debug, Default)]
pub struct Totals {
    retired: Mutex<HashMap<Arc<str>, MessageStats>>,
}

impl Totals {
    /// The counts of closed channels, by vhost.
    pub fn retired(&self) -> HashMap<Arc<str>, MessageStats> {
        self.retired.lock().clone()
    }

    /// Count work done outside any channel (the management API's publishes).
    pub fn count(&self, vhost: &Arc<str>, stats: &MessageStats) {
        self.retired
            .lock()
            .entry(vhost.clone())
            .or_default()
            .add(stats);
    }

    /// Forget a deleted vhost's counts.
    pub fn forget_vhost(&self, vhost: &str) {
        self.retired.lock().remove(vhost);
    }
}

/// A channel's counters and the facts the management API lists about it.
/// Shared by the channel, its delivery link and the connection's list.
#[derive(Debug)]
pub struct ChannelStats {
    pub number: u16,
    pub vhost: Arc<str>,
    pub publish: Counter,
    pub confirm: Counter,
    pub return_unroutable: Counter,
    pub drop_unroutable: Counter,
    pub deliver: Counter,
    pub deliver_no_ack: Counter,
    pub get: Counter,
    pub get_no_ack: Counter,
    pub get_empty: Counter,
    pub ack: Counter,
    pub redeliver: Counter,
    /// `basic.qos` with global=false: the prefetch of new consumers.
    pub prefetch_count: AtomicU16,
    /// `basic.qos` with global=true.
    pub global_prefetch_count: AtomicU16,
    pub confirm_mode: AtomicBool,
    pub transactional: AtomicBool,
    pub consumer_count: AtomicU16,
    totals: Arc<Totals>,
}

impl ChannelStats {
    pub fn new(number: u16, vhost: Arc<str>, totals: Arc<Totals>) -> ChannelStats {
        ChannelStats {
            number,
            vhost,
            publish: Counter::default(),
            confirm: Counter::default(),
            return_unroutable: Counter::default(),
            drop_unroutable: Counter::default(),
            deliver: Counter::default(),
            deliver_no_ack: Counter::default(),
            get: Counter::default(),
            get_no_ack: Counter::default(),
            get_empty: Counter::default(),
            ack: Counter::default(),
            redeliver: Counter::default(),
            prefetch_count: AtomicU16::new(0),
            global_prefetch_count: AtomicU16::new(0),
            confirm_mode: AtomicBool::new(false),
            transactional: AtomicBool::new(false),
            consumer_count: AtomicU16::new(0),
            totals,
        }
    }

    pub fn message_stats(&self) -> MessageStats {
        MessageStats {
            publish: self.publish.get(),
            confirm: self.confirm.get(),
            return_unroutable: self.return_unroutable.get(),
            drop_unroutable: self.drop_unroutable.get(),
            deliver: self.deliver.get(),
            deliver_no_ack: self.deliver_no_ack.get(),
            get: self.get.get(),
            get_no_ack: self.get_no_ack.get(),
            get_empty: self.get_empty.get(),
            ack: self.ack.get(),
            redeliver: self.redeliver.get(),
        }
    }
}

impl Drop for ChannelStats {
    /// A closing channel leaves its counts to the totals.
    fn drop(&mut self) {
        let stats = self.message_stats();
        if stats != MessageStats::default() {
            let mut retired = self.totals.retired.lock();
            retired.entry(self.vhost.clone()).or_default().add(&stats);
        }
    }
}

/// An open channel as the management API sees it (implemented by the
/// channel's link, which owns the live state).
pub trait ChannelView: Send + Sync + std::fmt::Debug {
    fn stats(&self) -> &ChannelStats;
    /// Deliveries awaiting acknowledgement.
    fn unacked(&self) -> u32;
}

/// A connection's byte counters and its open channels.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    pub recv_oct: Counter,
    pub recv_cnt: Counter,
    pub send_oct: Counter,
    pub send_cnt: Counter,
    channels: Mutex<Vec<Arc<dyn ChannelView>>>,
}

impl ConnectionStats {
    /// A channel opened (its counters are listed from now on).
    pub fn add_channel(&self, channel: Arc<dyn ChannelView>) {
        self.channels.lock().push(channel);
    }

    /// A channel closed.
    pub fn remove_channel(&self, number: u16) {
        self.channels.lock().retain(|c| c.stats().number != number);
    }

    /// The open channels, by number.
    pub fn channels(&self) -> Vec<Arc<dyn ChannelView>> {
        let mut channels = self.channels.lock().clone();
        channels.sort_by_key(|c| c.stats().number);
        channels
    }

    pub fn channel_count(&self) -> usize {
        self.channels.lock().len()
    }

    /// Close every channel's counts (the connection ended).
    pub fn clear_channels(&self) {
        self.channels.lock().clear();
    }
}

/// A queue's message counters, kept under the queue's own lock.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueueCounters {
    pub publish: u64,
    pub deliver: u64,
    pub deliver_no_ack: u64,
    pub get: u64,
    pub get_no_ack: u64,
    pub get_empty: u64,
    pub ack: u64,
    pub redeliver: u64,
}

impl QueueCounters {
    pub fn deliver_get(&self) -> u64 {
        self.deliver + self.deliver_no_ack + self.get + self.get_no_ack
    }

    /// The fields by RabbitMQ's names.
    pub fn fields(&self) -> [(&'static str, u64); 9] {
        [
            ("publish", self.publish),
            ("deliver", self.deliver),
            ("deliver_no_ack", self.deliver_no_ack),
            ("get", self.get),
            ("get_no_ack", self.get_no_ack),
            ("deliver_get", self.deliver_get()),
            ("get_empty", self.get_empty),
            ("ack", self.ack),
            ("redeliver", self.redeliver),
        ]
    }
}

/// An exchange's counters: messages published into it, and those it
/// routed to at least one queue.
#[derive(Debug, Default)]
pub struct ExchangeCounters {
    pub publish_in: Counter,
    pub publish_out: Counter,
}

/// What a rate belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateKey {
    Overview,
    VHost(Arc<str>),
    Queue(Arc<str>, Arc<str>),
    Exchange(Arc<str>, Arc<str>),
    Connection(u64),
    Channel(u64, u16),
}

#[derive(Debug)]
struct Sample {
    at: Instant,
    values: Vec<(&'static str, u64)>,
    rates: Vec<(&'static str, f64)>,
    /// The sampling round that last saw the object.
    round: u64,
}

/// The latest rate of each counter of each object, per second, over the
/// last sampling interval.
#[derive(Debug, Default)]
pub struct RateTable {
    samples: Mutex<HashMap<RateKey, Sample>>,
    round: AtomicU64,
}

impl RateTable {
    /// Start a sampling round; objects not recorded in it are forgotten
    /// by [`RateTable::end_round`].
    pub fn begin_round(&self) -> u64 {
        self.round.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Record the counters of one object at `at`.
    pub fn record(&self, round: u64, key: RateKey, at: Instant, values: &[(&'static str, u64)]) {
        let mut samples = self.samples.lock();
        match samples.get_mut(&key) {
            Some(sample) => {
                let seconds = at.saturating_duration_since(sample.at).as_secs_f64();
                if seconds > 0.0 {
                    sample.rates = values
                        .iter()
                        .map(|&(name, value)| {
                            let before = sample
                                .values
                                .iter()
                                .find(|(n, _)| *n == name)
                                .map_or(value, |&(_, v)| v);
                            (name, (value as f64 - before as f64) / seconds)
                        })
                        .collect();
                }
                sample.at = at;
                sample.values = values.to_vec();
                sample.round = round;
            }
            None => {
                samples.insert(
                    key,
                    Sample {
                        at,
                        values: values.to_vec(),
                        rates: Vec::new(),
                        round,
                    },
                );
            }
        }
    }

    /// Forget the objects the round `round` did not see (they are gone).
    pub fn end_round(&self, round: u64) {
        self.samples.lock().retain(|_, s| s.round == round);
    }

    /// The rate of counter `name` of `key` (0 before two samples).
    pub fn rate(&self, key: &RateKey, name: &str) -> f64 {
        self.samples
            .lock()
            .get(key)
            .and_then(|s| s.rates.iter().find(|(n, _)| *n == name))
            .map_or(0.0, |&(_, r)| r)
    }

    /// Every rate of `key`.
    pub fn rates(&self, key: &RateKey) -> Vec<(&'static str, f64)> {
        self.samples
            .lock()
            .get(key)
            .map(|s| s.rates.clone())
            .unwrap_or_default()
    }

    /// The rates of many objects at once (one lock for a whole listing).
    pub fn rates_of<'a>(
        &self,
        keys: impl Iterator<Item = &'a RateKey>,
    ) -> Vec<Vec<(&'static str, f64)>> {
        let samples = self.samples.lock();
        keys.map(|k| samples.get(k).map(|s| s.rates.clone()).unwrap_or_default())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_the_difference_over_the_interval() {
        let table = RateTable::default();
        let start = Instant::now();
        let key = RateKey::Overview;
        let round = table.begin_round();
        table.record(round, key.clone(), start, &[("publish", 10)]);
        assert_eq!(table.rate(&key, "publish"), 0.0);
        let round = table.begin_round();
        let later = start + std::time::Duration::from_secs(5);
        table.record(round, key.clone(), later, &[("publish", 60)]);
        assert_eq!(table.rate(&key, "publish"), 10.0);
        table.end_round(round);
        let round = table.begin_round();
        table.end_round(round);
        assert_eq!(table.rate(&key, "publish"), 0.0);
    }

    #[test]
    fn closed_channels_leave_their_counts() {
        let totals = Arc::new(Totals::default());
        let channel = ChannelStats::new(1, Arc::from("/"), totals.clone());
        channel.publish.add(3);
        channel.ack.incr();
        drop(channel);
        let retired = totals.retired();
        assert_eq!(retired["/"].publish, 3);
        assert_eq!(retired["/"].ack, 1);
    }
}
