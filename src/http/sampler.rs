//! Message rates: every [`SAMPLE_INTERVAL`] the sampler reads the counters
//! of the broker, its vhosts, queues, exchanges, connections and channels
//! into the broker's [`crate::stats::RateTable`]. Nothing on the message
//! path waits for it; it only reads atomics and takes each queue's lock
//! once per round.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use crate::broker::Broker;
use crate::stats::{MessageStats, RateKey, SAMPLE_INTERVAL};

/// The message statistics of each vhost: its open channels' counters and
/// what its closed channels left.
pub fn message_stats_by_vhost(broker: &Broker) -> HashMap<Arc<str>, MessageStats> {
    let mut by_vhost = broker.totals.retired();
    for connection in broker.connections() {
        for channel in connection.stats.channels() {
            let stats = channel.stats();
            by_vhost
                .entry(stats.vhost.clone())
                .or_default()
                .add(&stats.message_stats());
        }
    }
    by_vhost
}

/// Sample until `stop` turns true.
pub async fn run(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(SAMPLE_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let broker = broker.clone();
                // A round over many queues takes their locks: off the workers.
                let _ = tokio::task::spawn_blocking(move || sample(&broker)).await;
            }
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
        }
    }
}

/// One round.
pub fn sample(broker: &Broker) {
    let rates = &broker.rates;
    let round = rates.begin_round();
    let now = Instant::now();
    let mut overall = MessageStats::default();
    for (vhost, stats) in message_stats_by_vhost(broker) {
        overall.add(&stats);
        rates.record(round, RateKey::VHost(vhost), now, &stats.fields());
    }
    let (mut ready, mut unacked) = (0u64, 0u64);
    for name in broker.vhost_names() {
        let Some(vhost) = broker.vhost(&name) else {
            continue;
        };
        for queue in vhost.queues() {
            let snapshot = queue.snapshot();
            ready += u64::from(snapshot.ready);
            unacked += u64::from(snapshot.unacked);
            let mut values = snapshot.counters.fields().to_vec();
            values.push(("messages", u64::from(snapshot.ready + snapshot.unacked)));
            values.push(("messages_ready", u64::from(snapshot.ready)));
            values.push(("messages_unacknowledged", u64::from(snapshot.unacked)));
            let key = RateKey::Queue(queue.vhost.clone(), queue.name.clone());
            rates.record(round, key, now, &values);
        }
        for exchange in vhost.exchange_infos() {
            let key = RateKey::Exchange(vhost.name.clone(), exchange.name.clone());
            let values = [
                ("publish_in", exchange.publish_in),
                ("publish_out", exchange.publish_out),
            ];
            rates.record(round, key, now, &values);
        }
    }
    for connection in broker.connections() {
        let stats = &connection.stats;
        let values = [
            ("recv_oct", stats.recv_oct.get()),
            ("send_oct", stats.send_oct.get()),
        ];
        rates.record(round, RateKey::Connection(connection.id), now, &values);
        for channel in stats.channels() {
            let channel = channel.stats();
            let key = RateKey::Channel(connection.id, channel.number);
            rates.record(round, key, now, &channel.message_stats().fields());
        }
    }
    let mut values = overall.fields().to_vec();
    values.push(("messages", ready + unacked));
    values.push(("messages_ready", ready));
    values.push(("messages_unacknowledged", unacked));
    rates.record(round, RateKey::Overview, now, &values);
    rates.end_round(round);
}
