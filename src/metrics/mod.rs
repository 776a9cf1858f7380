//! Prometheus metrics under the names, types, help texts and labels of
//! RabbitMQ's `rabbitmq_prometheus` plugin, so dashboards and alerts
//! written for RabbitMQ read Warren unchanged.
//!
//! `/metrics` aggregates (one sample per family, like the plugin's default);
//! `/metrics/per-object` gives one sample per queue with `vhost` and `queue`
//! labels. Only what Warren has is reported: no Erlang VM families, no Raft.
//!
//! A scrape reads the [`counters`] (plain atomics the hot path bumps) and
//! each queue's counts under its own lock, one queue at a time; it takes
//! nothing on the publish or delivery path.

pub mod counters;
pub mod server;

use std::fmt::{Display, Write};
use std::sync::Arc;

use crate::alarm;
use crate::broker::Broker;
use crate::queue::{Queue, QueueDepth};

pub use server::MetricsServer;

/// The content type of the text exposition format the plugin answers with.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// The protocol label of every AMQP 0-9-1 counter.
const AMQP: (&str, &str) = ("protocol", "amqp091");

/// Which samples a scrape returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Totals over all objects (`/metrics`).
    Aggregated,
    /// One sample per queue (`/metrics/per-object`).
    PerObject,
}

/// The Prometheus text exposition of `broker`.
pub fn render(broker: &Broker, scope: Scope) -> String {
    let queues = all_queues(broker);
    let depths: Vec<(&Queue, QueueDepth)> = queues.iter().map(|q| (&**q, q.depth())).collect();
    let mut out = Exposition::default();
    // The plugin reports alarms in its aggregated output only.
    if scope == Scope::Aggregated {
        alarms(&mut out, broker);
    }
    lifecycle(&mut out);
    process(&mut out, broker);
    queue_depths(&mut out, &depths, scope);
    if scope == Scope::Aggregated {
        channel_totals(&mut out);
    }
    totals(&mut out, broker, &depths);
    identity(&mut out);
    global(&mut out, &depths);
    out.text
}

fn all_queues(broker: &Broker) -> Vec<Arc<Queue>> {
    let mut queues = Vec::new();
    for name in broker.vhost_names() {
        if let Some(vhost) = broker.vhost(&name) {
            queues.extend(vhost.queues());
        }
    }
    queues
}

fn alarms(out: &mut Exposition, broker: &Broker) {
    let state = broker.alarms.state();
    out.single(
        "rabbitmq_alarms_file_descriptor_limit",
        Kind::Untyped,
        "is 1 if file descriptor limit alarm is in effect",
        0,
    );
    out.single(
        "rabbitmq_alarms_free_disk_space_watermark",
        Kind::Untyped,
        "is 1 if free disk space watermark alarm is in effect",
        u8::from(state.disk),
    );
    out.single(
        "rabbitmq_alarms_memory_used_watermark",
        Kind::Untyped,
        "is 1 if VM memory watermark alarm is in effect",
        u8::from(state.memory),
    );
}

fn lifecycle(out: &mut Exposition) {
    use counters::*;
    let families: [(&str, &str, &Counter); 7] = [
        (
            "rabbitmq_connections_opened_total",
            "Total number of connections opened",
            &CONNECTIONS_OPENED,
        ),
        (
            "rabbitmq_connections_closed_total",
            "Total number of connections closed or terminated",
            &CONNECTIONS_CLOSED,
        ),
        (
            "rabbitmq_channels_opened_total",
            "Total number of channels opened",
            &CHANNELS_OPENED,
        ),
        (
            "rabbitmq_channels_closed_total",
            "Total number of channels closed",
            &CHANNELS_CLOSED,
        ),
        (
            "rabbitmq_queues_declared_total",
            "Total number of queues declared",
            &QUEUES_DECLARED,
        ),
        (
            "rabbitmq_queues_created_total",
            "Total number of queues created",
            &QUEUES_CREATED,
        ),
        (
            "rabbitmq_queues_deleted_total",
            "Total number of queues deleted",
            &QUEUES_DELETED,
        ),
    ];
    for (name, help, counter) in families {
        out.single(name, Kind::Counter, help, counter.get());
    }
}

fn process(out: &mut Exposition, broker: &Broker) {
    if let Some(fds) = open_fds() {
        out.single(
            "rabbitmq_process_open_fds",
            Kind::Gauge,
            "Open file descriptors",
            fds,
        );
    }
    out.single(
        "rabbitmq_process_open_tcp_sockets",
        Kind::Gauge,
        "Open TCP sockets",
        broker.connection_count(),
    );
    if let Some(rss) = alarm::process_rss() {
        out.single(
            "rabbitmq_process_resident_memory_bytes",
            Kind::Gauge,
            "Memory used in bytes",
            rss,
        );
    }
    if let Some(free) = alarm::disk_free(&broker.config.data_dir) {
        out.single(
            "rabbitmq_disk_space_available_bytes",
            Kind::Gauge,
            "Disk space available in bytes",
            free,
        );
    }
    if let Some(max) = max_fds() {
        out.single(
            "rabbitmq_process_max_fds",
            Kind::Gauge,
            "Open file descriptors limit",
            max,
        );
    }
    out.single(
        "rabbitmq_resident_memory_limit_bytes",
        Kind::Gauge,
        "Memory high watermark in bytes",
        broker.alarms.memory_limit(),
    );
    out.single(
        "rabbitmq_disk_space_available_limit_bytes",
        Kind::Gauge,
        "Free disk space low watermark in bytes",
        broker.alarms.disk_limit(),
    );
}

/// The queue families: summed over all queues, or one sample per queue.
fn queue_depths(out: &mut Exposition, depths: &[(&Queue, QueueDepth)], scope: Scope) {
    type Field = fn(&QueueDepth) -> u64;
    let families: [(&str, &str, Field); 5] = [
        (
            "rabbitmq_queue_messages_ready",
            "Messages ready to be delivered to consumers",
            |d| d.ready,
        ),
        (
            "rabbitmq_queue_messages_unacked",
            "Messages delivered to consumers but not yet acknowledged",
            |d| d.unacked,
        ),
        (
            "rabbitmq_queue_messages",
            "Sum of ready and unacknowledged messages - total queue depth",
            |d| d.ready + d.unacked,
        ),
        ("rabbitmq_queue_consumers", "Consumers on a queue", |d| {
            d.consumers
        }),
        (
            "rabbitmq_queue_messages_ready_bytes",
            "Size in bytes of ready messages",
            |d| d.ready_bytes,
        ),
    ];
    for (name, help, field) in families {
        out.family(name, Kind::Gauge, help);
        match scope {
            Scope::Aggregated => {
                let sum: u64 = depths.iter().map(|(_, d)| field(d)).sum();
                out.sample(name, &[], sum);
            }
            Scope::PerObject => {
                for (queue, depth) in depths {
                    let labels = [("vhost", &*queue.vhost), ("queue", &*queue.name)];
                    out.sample(name, &labels, field(depth));
                }
            }
        }
    }
}

/// The plugin's channel families, summed. RabbitMQ sums over the channels
/// open at the time; Warren reports its broker-wide totals, which never go
/// down when a channel closes, so `rate()` over them is the message rate.
/// Per object they would need per-channel counters, which are not kept.
fn channel_totals(out: &mut Exposition) {
    use counters::*;
    let sum3 = |c: &ByQueueType| c.get().iter().sum::<u64>();
    let families: [(&str, &str, u64); 12] = [
        (
            "rabbitmq_channel_messages_published_total",
            "Total number of messages published into an exchange on a channel",
            RECEIVED.get(),
        ),
        (
            "rabbitmq_channel_messages_confirmed_total",
            "Total number of messages published into an exchange and confirmed on the channel",
            CONFIRMED.get(),
        ),
        (
            "rabbitmq_channel_messages_unroutable_returned_total",
            "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable",
            UNROUTABLE_RETURNED.get(),
        ),
        (
            "rabbitmq_channel_messages_unroutable_dropped_total",
            "Total number of messages published as non-mandatory into an exchange and dropped as unroutable",
            UNROUTABLE_DROPPED.get(),
        ),
        (
            "rabbitmq_channel_get_ack_total",
            "Total number of messages fetched with basic.get in manual acknowledgement mode",
            sum3(&DELIVERED_GET_MANUAL_ACK),
        ),
        (
            "rabbitmq_channel_get_total",
            "Total number of messages fetched with basic.get in automatic acknowledgement mode",
            sum3(&DELIVERED_GET_AUTO_ACK),
        ),
        (
            "rabbitmq_channel_messages_delivered_ack_total",
            "Total number of messages delivered to consumers in manual acknowledgement mode",
            sum3(&DELIVERED_CONSUME_MANUAL_ACK),
        ),
        (
            "rabbitmq_channel_messages_delivered_total",
            "Total number of messages delivered to consumers in automatic acknowledgement mode",
            sum3(&DELIVERED_CONSUME_AUTO_ACK),
        ),
        (
            "rabbitmq_channel_messages_redelivered_total",
            "Total number of messages redelivered to consumers",
            sum3(&REDELIVERED),
        ),
        (
            "rabbitmq_channel_messages_acked_total",
            "Total number of messages acknowledged by consumers",
            sum3(&ACKNOWLEDGED),
        ),
        (
            "rabbitmq_channel_get_empty_total",
            "Total number of times basic.get operations fetched no message",
            sum3(&GET_EMPTY),
        ),
        (
            "rabbitmq_queue_messages_published_total",
            "Total number of messages published to queues",
            ROUTED.get(),
        ),
    ];
    for (name, help, value) in families {
        out.single(name, Kind::Counter, help, value);
    }
}

fn totals(out: &mut Exposition, broker: &Broker, depths: &[(&Queue, QueueDepth)]) {
    let consumers: u64 = depths.iter().map(|(_, d)| d.consumers).sum();
    out.single(
        "rabbitmq_connections",
        Kind::Gauge,
        "Connections currently open",
        broker.connection_count(),
    );
    out.single(
        "rabbitmq_channels",
        Kind::Gauge,
        "Channels currently open",
        counters::channels_open(),
    );
    out.single(
        "rabbitmq_consumers",
        Kind::Gauge,
        "Consumers currently connected",
        consumers,
    );
    out.single(
        "rabbitmq_queues",
        Kind::Gauge,
        "Queues available",
        depths.len(),
    );
}

fn identity(out: &mut Exposition) {
    let version = env!("CARGO_PKG_VERSION");
    let rabbitmq = crate::connection::COMPATIBLE_VERSION;
    out.family(
        "rabbitmq_build_info",
        Kind::Untyped,
        "RabbitMQ & Erlang/OTP version info",
    );
    out.sample(
        "rabbitmq_build_info",
        &[
            ("rabbitmq_version", rabbitmq),
            ("prometheus_plugin_version", rabbitmq),
            ("warren_version", version),
        ],
        1,
    );
    let node = node_name();
    out.family(
        "rabbitmq_identity_info",
        Kind::Untyped,
        "RabbitMQ node & cluster identity info",
    );
    out.sample(
        "rabbitmq_identity_info",
        &[
            ("rabbitmq_node", &node),
            ("rabbitmq_cluster", &node),
            ("rabbitmq_cluster_permanent_id", &format!("warren-{node}")),
        ],
        1,
    );
}

/// The name Warren gives its node, as `cluster_name` in its AMQP server
/// properties: `warren@` and the host name.
pub fn node_name() -> String {
    format!("warren@{}", crate::connection::hostname())
}

fn global(out: &mut Exposition, depths: &[(&Queue, QueueDepth)]) {
    use counters::*;
    let consumers: u64 = depths.iter().map(|(_, d)| d.consumers).sum();
    out.family(
        "rabbitmq_global_consumers",
        Kind::Gauge,
        "Current number of consumers",
    );
    out.sample("rabbitmq_global_consumers", &[AMQP], consumers);

    let per_type = |out: &mut Exposition, name: &str, help: &str, counts: [u64; 3]| {
        out.family(name, Kind::Counter, help);
        for (queue_type, count) in QUEUE_TYPE_LABELS.iter().zip(counts) {
            out.sample(name, &[AMQP, ("queue_type", queue_type)], count);
        }
    };
    let per_protocol = |out: &mut Exposition, name: &str, help: &str, count: u64| {
        out.family(name, Kind::Counter, help);
        out.sample(name, &[AMQP], count);
    };
    let delivered = [
        DELIVERED_CONSUME_AUTO_ACK.get(),
        DELIVERED_CONSUME_MANUAL_ACK.get(),
        DELIVERED_GET_AUTO_ACK.get(),
        DELIVERED_GET_MANUAL_ACK.get(),
    ];
    let delivered_total: [u64; 3] =
        std::array::from_fn(|i| delivered.iter().map(|counts| counts[i]).sum());

    per_type(
        out,
        "rabbitmq_global_messages_acknowledged_total",
        "Total number of messages acknowledged by consumers",
        ACKNOWLEDGED.get(),
    );
    per_protocol(
        out,
        "rabbitmq_global_messages_confirmed_total",
        "Total number of messages confirmed to publishers",
        CONFIRMED.get(),
    );
    per_type(
        out,
        "rabbitmq_global_messages_delivered_consume_auto_ack_total",
        "Total number of messages delivered to consumers using basic.consume with automatic acknowledgment",
        delivered[0],
    );
    per_type(
        out,
        "rabbitmq_global_messages_delivered_consume_manual_ack_total",
        "Total number of messages delivered to consumers using basic.consume with manual acknowledgment",
        delivered[1],
    );
    per_type(
        out,
        "rabbitmq_global_messages_delivered_get_auto_ack_total",
        "Total number of messages delivered to consumers using basic.get with automatic acknowledgment",
        delivered[2],
    );
    per_type(
        out,
        "rabbitmq_global_messages_delivered_get_manual_ack_total",
        "Total number of messages delivered to consumers using basic.get with manual acknowledgment",
        delivered[3],
    );
    per_type(
        out,
        "rabbitmq_global_messages_delivered_total",
        "Total number of messages delivered to consumers",
        delivered_total,
    );
    per_type(
        out,
        "rabbitmq_global_messages_get_empty_total",
        "Total number of times basic.get operations fetched no message",
        GET_EMPTY.get(),
    );
    per_protocol(
        out,
        "rabbitmq_global_messages_received_confirm_total",
        "Total number of messages received from publishers expecting confirmations",
        RECEIVED_CONFIRM.get(),
    );
    per_protocol(
        out,
        "rabbitmq_global_messages_received_total",
        "Total number of messages received from publishers",
        RECEIVED.get(),
    );
    per_type(
        out,
        "rabbitmq_global_messages_redelivered_total",
        "Total number of messages redelivered to consumers",
        REDELIVERED.get(),
    );
    per_protocol(
        out,
        "rabbitmq_global_messages_routed_total",
        "Total number of messages routed to queues or streams",
        ROUTED.get(),
    );
    per_protocol(
        out,
        "rabbitmq_global_messages_unroutable_dropped_total",
        "Total number of messages published as non-mandatory into an exchange and dropped as unroutable",
        UNROUTABLE_DROPPED.get(),
    );
    per_protocol(
        out,
        "rabbitmq_global_messages_unroutable_returned_total",
        "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable",
        UNROUTABLE_RETURNED.get(),
    );
}

/// Open file descriptors of this process.
fn open_fds() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
}

/// This process's limit on open file descriptors.
fn max_fds() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given, nothing else.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    // The field width varies by platform (u64 on Linux x86_64).
    #[allow(clippy::unnecessary_cast)]
    (rc == 0).then_some(limit.rlim_cur as u64)
}

/// A metric family's type.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Untyped,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Untyped => "untyped",
        }
    }
}

/// The text exposition format, written the way the plugin writes it:
/// `# TYPE` before `# HELP`, labels in a fixed order.
#[derive(Debug, Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.text, "# TYPE {name} {}", kind.as_str());
        let _ = writeln!(self.text, "# HELP {name} {help}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                self.text.push_str(label);
                self.text.push_str("=\"");
                escape_label_value(&mut self.text, value);
                self.text.push('"');
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    /// A family of one unlabelled sample.
    fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// A label value as the exposition format quotes it: backslash, double
/// quote and line feed escaped (queue names may hold any of them).
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_written_as_the_plugin_writes_them() {
        let mut out = Exposition::default();
        out.family("rabbitmq_queue_messages", Kind::Gauge, "Depth");
        out.sample(
            "rabbitmq_queue_messages",
            &[("vhost", "/"), ("queue", "a\"b\\c\nd")],
            3,
        );
        out.single("rabbitmq_queues", Kind::Gauge, "Queues available", 1);
        assert_eq!(
            out.text,
            "# TYPE rabbitmq_queue_messages gauge\n\
             # HELP rabbitmq_queue_messages Depth\n\
             rabbitmq_queue_messages{vhost=\"/\",queue=\"a\\\"b\\\\c\\nd\"} 3\n\
             # TYPE rabbitmq_queues gauge\n\
             # HELP rabbitmq_queues Queues available\n\
             rabbitmq_queues 1\n"
        );
    }
}
