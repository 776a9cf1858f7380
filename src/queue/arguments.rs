//! Queue arguments (`x-…`): parsed and validated once, at declaration,
//! with RabbitMQ 3.x's validators and error texts.
//!
//! As in RabbitMQ, each queue type accepts its own set of arguments: an
//! argument another type knows but this one does not is refused ("invalid
//! arg … of queue type …"); arguments nobody knows are ignored.

use amq_protocol::types::{AMQPValue, FieldTable};

use crate::amqp_err;
use crate::protocol::AmqpResult;
use crate::protocol::table::{as_bytes, as_i128, type_name};

/// Highest `x-max-priority`.
pub const MAX_PRIORITY: i128 = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    #[default]
    Classic,
    Quorum,
    Stream,
}

impl QueueType {
    /// RabbitMQ's module name, as its error texts print the type.
    fn module(self) -> &'static str {
        match self {
            QueueType::Classic => "rabbit_classic_queue",
            QueueType::Quorum => "rabbit_quorum_queue",
            QueueType::Stream => "rabbit_stream_queue",
        }
    }

    /// The arguments this type understands (RabbitMQ 3.10's lists).
    fn arguments(self) -> &'static [&'static str] {
        match self {
            QueueType::Classic => &[
                "x-expires",
                "x-message-ttl",
                "x-dead-letter-exchange",
                "x-dead-letter-routing-key",
                "x-max-length",
                "x-max-length-bytes",
                "x-max-priority",
                "x-overflow",
                "x-queue-mode",
                "x-queue-version",
                "x-single-active-consumer",
                "x-queue-type",
                "x-queue-master-locator",
                "x-consumer-timeout",
            ],
            QueueType::Quorum => &[
                "x-dead-letter-exchange",
                "x-dead-letter-routing-key",
                "x-dead-letter-strategy",
                "x-expires",
                "x-max-length",
                "x-max-length-bytes",
                "x-max-in-memory-length",
                "x-max-in-memory-bytes",
                "x-overflow",
                "x-single-active-consumer",
                "x-queue-type",
                "x-quorum-initial-group-size",
                "x-delivery-limit",
                "x-message-ttl",
                "x-queue-leader-locator",
                "x-consumer-timeout",
            ],
            QueueType::Stream => &[
                "x-max-length-bytes",
                "x-queue-type",
                "x-max-age",
                "x-stream-max-segment-size-bytes",
                "x-initial-cluster-size",
                "x-queue-leader-locator",
            ],
        }
    }

    /// Every argument some queue type (streams included) understands.
    fn all_arguments() -> &'static [&'static str] {
        &[
            "x-expires",
            "x-message-ttl",
            "x-dead-letter-exchange",
            "x-dead-letter-routing-key",
            "x-dead-letter-strategy",
            "x-max-length",
            "x-max-length-bytes",
            "x-max-in-memory-length",
            "x-max-in-memory-bytes",
            "x-max-priority",
            "x-overflow",
            "x-queue-mode",
            "x-queue-version",
            "x-single-active-consumer",
            "x-queue-type",
            "x-queue-master-locator",
            "x-quorum-initial-group-size",
            "x-delivery-limit",
            "x-queue-leader-locator",
            "x-max-age",
            "x-stream-max-segment-size-bytes",
            "x-initial-cluster-size",
            "x-consumer-timeout",
        ]
    }

    /// The arguments compared when a queue is declared again.
    pub fn equivalence_keys(self) -> &'static [&'static str] {
        self.arguments()
    }
}

/// What happens when a length limit is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Drop (or dead-letter) the oldest messages.
    #[default]
    DropHead,
    /// Refuse new messages (nack them for confirming publishers).
    RejectPublish,
    /// Refuse new messages and dead-letter them.
    RejectPublishDlx,
}

/// The validated arguments of a queue.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueArgs {
    pub queue_type: QueueType,
    pub message_ttl: Option<u64>,
    pub expires: Option<u64>,
    pub dead_letter_exchange: Option<String>,
    pub dead_letter_routing_key: Option<String>,
    pub max_length: Option<u64>,
    pub max_length_bytes: Option<u64>,
    pub overflow: Overflow,
    pub max_priority: Option<u8>,
    pub single_active_consumer: bool,
    pub delivery_limit: Option<u64>,
    pub consumer_timeout: Option<u64>,
    /// A stream's `x-max-age`, in milliseconds.
    pub max_age: Option<u64>,
    /// A stream's `x-stream-max-segment-size-bytes`.
    pub max_segment_size_bytes: Option<u64>,
}

/// RabbitMQ's error for a refused argument: "invalid arg 'k' for queue …: reason".
fn invalid(key: &str, queue: &str, reason: impl std::fmt::Display) -> crate::protocol::AmqpError {
    amqp_err!(
        PreconditionFailed,
        "invalid arg '{key}' for {queue}: {reason}"
    )
}

/// check_int_arg: any integer type.
fn int(key: &str, queue: &str, v: &AMQPValue) -> AmqpResult<i128> {
    as_i128(v).ok_or_else(|| {
        invalid(
            key,
            queue,
            format!("\"expected integer, got {}\"", type_name(v)),
        )
    })
}

fn non_neg(key: &str, queue: &str, v: &AMQPValue) -> AmqpResult<u64> {
    let n = int(key, queue, v)?;
    if n < 0 {
        return Err(invalid(key, queue, format!("{{value_negative,{n}}}")));
    }
    Ok(u64::try_from(n).unwrap_or(u64::MAX))
}

fn expiry(key: &str, queue: &str, n: i128) -> AmqpResult<u64> {
    crate::message::check_expiry(n).map_err(|why| invalid(key, queue, why))
}

fn string(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(_) | AMQPValue::ShortString(_) => {
            as_bytes(v).map(|b| String::from_utf8_lossy(b).into_owned())
        }
        _ => None,
    }
}

fn unacceptable(key: &str, queue: &str, v: &AMQPValue) -> crate::protocol::AmqpError {
    invalid(
        key,
        queue,
        format!("{{unacceptable_type,{}}}", type_name(v)),
    )
}

impl QueueArgs {
    /// Validate a declaration's arguments. `queue` is "queue 'q' in vhost '/'".
    pub fn parse(arguments: &FieldTable, queue: &str) -> AmqpResult<QueueArgs> {
        let get = |key: &str| arguments.inner().get(key);
        let mut args = QueueArgs::default();
        if let Some(v) = get("x-queue-type") {
            let Some(kind) = string(v) else {
                return Err(unacceptable("x-queue-type", queue, v));
            };
            args.queue_type = match kind.as_str() {
                "classic" => QueueType::Classic,
                "quorum" => QueueType::Quorum,
                "stream" => QueueType::Stream,
                other => {
                    return Err(invalid(
                        "x-queue-type",
                        queue,
                        format!("\"unsupported queue type '{other}'\""),
                    ));
                }
            };
        }
        let known = args.queue_type.arguments();
        let applies = |key: &str| known.contains(&key);
        if let Some(v) = get("x-expires").filter(|_| applies("x-expires")) {
            let n = int("x-expires", queue, v)?;
            if n == 0 {
                return Err(invalid("x-expires", queue, "{value_zero,0}"));
            }
            args.expires = Some(expiry("x-expires", queue, n)?);
        }
        if let Some(v) = get("x-message-ttl").filter(|_| applies("x-message-ttl")) {
            let n = int("x-message-ttl", queue, v)?;
            args.message_ttl = Some(expiry("x-message-ttl", queue, n)?);
        }
        if let Some(v) = get("x-dead-letter-exchange").filter(|_| applies("x-dead-letter-exchange"))
        {
            args.dead_letter_exchange =
                Some(string(v).ok_or_else(|| unacceptable("x-dead-letter-exchange", queue, v))?);
        }
        if let Some(v) =
            get("x-dead-letter-routing-key").filter(|_| applies("x-dead-letter-routing-key"))
        {
            let key =
                string(v).ok_or_else(|| unacceptable("x-dead-letter-routing-key", queue, v))?;
            if args.dead_letter_exchange.is_none() && get("x-dead-letter-exchange").is_none() {
                return Err(invalid(
                    "x-dead-letter-routing-key",
                    queue,
                    "routing_key_but_no_dlx_defined",
                ));
            }
            args.dead_letter_routing_key = Some(key);
        }
        if let Some(v) = get("x-max-length").filter(|_| applies("x-max-length")) {
            args.max_length = Some(non_neg("x-max-length", queue, v)?);
        }
        if let Some(v) = get("x-max-length-bytes").filter(|_| applies("x-max-length-bytes")) {
            args.max_length_bytes = Some(non_neg("x-max-length-bytes", queue, v)?);
        }
        if let Some(v) = get("x-max-priority").filter(|_| applies("x-max-priority")) {
            let n = non_neg("x-max-priority", queue, v)?;
            if n as i128 > MAX_PRIORITY {
                return Err(invalid(
                    "x-max-priority",
                    queue,
                    format!("{{max_value_exceeded,{n}}}"),
                ));
            }
            args.max_priority = Some(n as u8);
        }
        if let Some(v) = get("x-overflow").filter(|_| applies("x-overflow")) {
            let mode = string(v).ok_or_else(|| unacceptable("x-overflow", queue, v))?;
            args.overflow = match mode.as_str() {
                "drop-head" => Overflow::DropHead,
                "reject-publish" => Overflow::RejectPublish,
                "reject-publish-dlx" => Overflow::RejectPublishDlx,
                _ => return Err(invalid("x-overflow", queue, "invalid_overflow")),
            };
        }
        if let Some(v) =
            get("x-single-active-consumer").filter(|_| applies("x-single-active-consumer"))
        {
            match v {
                AMQPValue::Boolean(b) => args.single_active_consumer = *b,
                other => return Err(unacceptable("x-single-active-consumer", queue, other)),
            }
        }
        if let Some(v) = get("x-queue-mode").filter(|_| applies("x-queue-mode")) {
            match string(v).as_deref() {
                Some("default" | "lazy") => {}
                Some(other) => {
                    return Err(invalid(
                        "x-queue-mode",
                        queue,
                        format!("\"unsupported queue mode '{other}'\""),
                    ));
                }
                None => return Err(unacceptable("x-queue-mode", queue, v)),
            }
        }
        if let Some(v) = get("x-delivery-limit").filter(|_| applies("x-delivery-limit")) {
            args.delivery_limit = Some(non_neg("x-delivery-limit", queue, v)?);
        }
        if let Some(v) = get("x-consumer-timeout").filter(|_| applies("x-consumer-timeout")) {
            args.consumer_timeout = Some(non_neg("x-consumer-timeout", queue, v)?);
        }
        if let Some(v) =
            get("x-quorum-initial-group-size").filter(|_| applies("x-quorum-initial-group-size"))
            && non_neg("x-quorum-initial-group-size", queue, v)? == 0
        {
            return Err(invalid(
                "x-quorum-initial-group-size",
                queue,
                "{value_zero,0}",
            ));
        }
        if let Some(v) = get("x-max-age").filter(|_| applies("x-max-age")) {
            let text = match v {
                AMQPValue::LongString(_) | AMQPValue::ShortString(_) => {
                    string(v).unwrap_or_default()
                }
                other => return Err(unacceptable("x-max-age", queue, other)),
            };
            args.max_age = Some(match parse_age(&text) {
                Ok(ms) => ms,
                Err(AgeError::Invalid) => {
                    return Err(invalid("x-max-age", queue, "invalid_max_age"));
                }
                Err(AgeError::Unparsable) => return Err(internal_error()),
            });
        }
        if let Some(v) = get("x-stream-max-segment-size-bytes")
            .filter(|_| applies("x-stream-max-segment-size-bytes"))
        {
            args.max_segment_size_bytes =
                Some(non_neg("x-stream-max-segment-size-bytes", queue, v)?);
        }
        for key in QueueType::all_arguments() {
            if !known.contains(key) && get(key).is_some() {
                return Err(amqp_err!(
                    PreconditionFailed,
                    "invalid arg '{key}' for {queue} of queue type {}",
                    args.queue_type.module()
                ));
            }
        }
        Ok(args)
    }

    /// The queue type's rules on the declaration's flags (quorum queues and
    /// streams are durable, shared and long-lived).
    pub fn check_flags(
        &self,
        queue: &str,
        durable: bool,
        exclusive: bool,
        auto_delete: bool,
    ) -> AmqpResult<()> {
        if self.queue_type == QueueType::Classic {
            return Ok(());
        }
        if auto_delete {
            return Err(amqp_err!(
                PreconditionFailed,
                "invalid property 'auto-delete' for {queue}"
            ));
        }
        if exclusive {
            return Err(amqp_err!(
                PreconditionFailed,
                "invalid property 'exclusive-owner' for {queue}"
            ));
        }
        if !durable {
            return Err(amqp_err!(
                PreconditionFailed,
                "invalid property 'non-durable' for {queue}"
            ));
        }
        Ok(())
    }

    pub fn is_quorum(&self) -> bool {
        self.queue_type == QueueType::Quorum
    }

    pub fn is_stream(&self) -> bool {
        self.queue_type == QueueType::Stream
    }

    /// RabbitMQ's module name for the queue's type, as error texts print it.
    pub fn type_module(&self) -> &'static str {
        self.queue_type.module()
    }
}

/// Why an age string (`x-max-age`, an `x-stream-offset` interval) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgeError {
    /// Not a positive number with a known unit: a 406 with RabbitMQ's text.
    Invalid,
    /// No leading digits at all: RabbitMQ fails inside its parser and closes
    /// the connection with a bare 541 INTERNAL_ERROR; Warren answers the same.
    Unparsable,
}

/// An age as RabbitMQ writes it (`7D`, `12h`, `30m`, `10s`, `1M`, `1Y`):
/// a positive integer and one unit (Y = 365 days, M = 30 days), in
/// milliseconds.
pub fn parse_age(text: &str) -> Result<u64, AgeError> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(AgeError::Unparsable);
    }
    let (number, unit) = text.split_at(digits);
    let n: u64 = number.parse().map_err(|_| AgeError::Invalid)?;
    if n == 0 {
        return Err(AgeError::Invalid);
    }
    let unit_ms: u64 = match unit {
        "Y" => 365 * 86_400_000,
        "M" => 30 * 86_400_000,
        "D" => 86_400_000,
        "h" => 3_600_000,
        "m" => 60_000,
        "s" => 1_000,
        _ => return Err(AgeError::Invalid),
    };
    Ok(n.saturating_mul(unit_ms))
}

/// RabbitMQ's answer where its own code fails on a client's value: the
/// connection closes with 541 and no explanation.
pub fn internal_error() -> crate::protocol::AmqpError {
    amqp_err!(InternalError, "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::{LongString, ShortString};

    const Q: &str = "queue 'q' in vhost '/'";

    fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert(ShortString::from(*k), v.clone());
        }
        t
    }

    fn s(v: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(v))
    }

    fn err(pairs: &[(&str, AMQPValue)]) -> String {
        QueueArgs::parse(&table(pairs), Q).unwrap_err().reply_text()
    }

    #[test]
    fn parses_the_usual_arguments() {
        let args = QueueArgs::parse(
            &table(&[
                ("x-message-ttl", AMQPValue::LongInt(500)),
                ("x-dead-letter-exchange", s("dlx")),
                ("x-dead-letter-routing-key", s("dead")),
                ("x-max-length", AMQPValue::LongLongInt(10)),
                ("x-overflow", s("reject-publish")),
                ("x-max-priority", AMQPValue::ShortShortUInt(9)),
                ("x-foo", s("ignored")),
            ]),
            Q,
        )
        .unwrap();
        assert_eq!(args.message_ttl, Some(500));
        assert_eq!(args.dead_letter_exchange.as_deref(), Some("dlx"));
        assert_eq!(args.max_length, Some(10));
        assert_eq!(args.overflow, Overflow::RejectPublish);
        assert_eq!(args.max_priority, Some(9));
    }

    #[test]
    fn refuses_like_rabbitmq() {
        assert_eq!(
            err(&[("x-message-ttl", AMQPValue::LongInt(-1))]),
            "PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue 'q' in vhost '/': {value_negative,-1}"
        );
        assert_eq!(
            err(&[("x-expires", AMQPValue::LongInt(0))]),
            "PRECONDITION_FAILED - invalid arg 'x-expires' for queue 'q' in vhost '/': {value_zero,0}"
        );
        assert_eq!(
            err(&[("x-max-length", s("10"))]),
            "PRECONDITION_FAILED - invalid arg 'x-max-length' for queue 'q' in vhost '/': \"expected integer, got longstr\""
        );
        assert_eq!(
            err(&[("x-max-priority", AMQPValue::LongInt(256))]),
            "PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue 'q' in vhost '/': {max_value_exceeded,256}"
        );
        assert_eq!(
            err(&[("x-overflow", s("drop-tail"))]),
            "PRECONDITION_FAILED - invalid arg 'x-overflow' for queue 'q' in vhost '/': invalid_overflow"
        );
        assert_eq!(
            err(&[("x-dead-letter-routing-key", s("k"))]),
            "PRECONDITION_FAILED - invalid arg 'x-dead-letter-routing-key' for queue 'q' in vhost '/': routing_key_but_no_dlx_defined"
        );
        assert_eq!(
            err(&[("x-single-active-consumer", s("yes"))]),
            "PRECONDITION_FAILED - invalid arg 'x-single-active-consumer' for queue 'q' in vhost '/': {unacceptable_type,longstr}"
        );
        assert_eq!(
            err(&[("x-queue-type", s("fancy"))]),
            "PRECONDITION_FAILED - invalid arg 'x-queue-type' for queue 'q' in vhost '/': \"unsupported queue type 'fancy'\""
        );
        assert_eq!(
            err(&[
                ("x-queue-type", s("quorum")),
                ("x-max-priority", AMQPValue::LongInt(5))
            ]),
            "PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue 'q' in vhost '/' of queue type rabbit_quorum_queue"
        );
        assert_eq!(
            err(&[("x-delivery-limit", AMQPValue::LongInt(5))]),
            "PRECONDITION_FAILED - invalid arg 'x-delivery-limit' for queue 'q' in vhost '/' of queue type rabbit_classic_queue"
        );
    }

    #[test]
    fn quorum_queues_must_be_durable_and_shared() {
        let args = QueueArgs::parse(&table(&[("x-queue-type", s("quorum"))]), Q).unwrap();
        assert!(args.check_flags(Q, true, false, false).is_ok());
        assert_eq!(
            args.check_flags(Q, false, false, false)
                .unwrap_err()
                .reply_text(),
            "PRECONDITION_FAILED - invalid property 'non-durable' for queue 'q' in vhost '/'"
        );
        assert!(args.check_flags(Q, true, true, false).is_err());
        assert!(args.check_flags(Q, true, false, true).is_err());
    }

    #[test]
    fn ages_are_read_as_rabbitmq_reads_them() {
        assert_eq!(parse_age("7D"), Ok(7 * 86_400_000));
        assert_eq!(parse_age("12h"), Ok(12 * 3_600_000));
        assert_eq!(parse_age("30m"), Ok(30 * 60_000));
        assert_eq!(parse_age("10s"), Ok(10_000));
        assert_eq!(parse_age("1M"), Ok(30 * 86_400_000));
        assert_eq!(parse_age("1Y"), Ok(365 * 86_400_000));
        assert_eq!(parse_age("0s"), Err(AgeError::Invalid));
        assert_eq!(parse_age("10"), Err(AgeError::Invalid));
        assert_eq!(parse_age("10 s"), Err(AgeError::Invalid));
        assert_eq!(parse_age("abc"), Err(AgeError::Unparsable));
        assert_eq!(parse_age("-1s"), Err(AgeError::Unparsable));
    }

    #[test]
    fn streams_take_their_own_arguments() {
        let args = QueueArgs::parse(
            &table(&[
                ("x-queue-type", s("stream")),
                ("x-max-age", s("1h")),
                ("x-max-length-bytes", AMQPValue::LongInt(1000)),
                ("x-stream-max-segment-size-bytes", AMQPValue::LongInt(500)),
            ]),
            Q,
        )
        .unwrap();
        assert!(args.is_stream());
        assert_eq!(args.max_age, Some(3_600_000));
        assert_eq!(args.max_length_bytes, Some(1000));
        assert_eq!(args.max_segment_size_bytes, Some(500));
        assert_eq!(
            err(&[("x-queue-type", s("stream")), ("x-max-age", s("abc"))]),
            "INTERNAL_ERROR"
        );
        assert_eq!(
            args.check_flags(Q, true, false, true)
                .unwrap_err()
                .reply_text(),
            "PRECONDITION_FAILED - invalid property 'auto-delete' for queue 'q' in vhost '/'"
        );
    }
}
