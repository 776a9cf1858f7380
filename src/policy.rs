//! Policies and operator policies: which one applies to a queue or an
//! exchange, and the effective arguments that result.
//!
//! A policy is RabbitMQ's runtime parameter of component `policy` (or
//! `operator_policy`): a name, a regular expression matched against
//! queue and exchange names, what it applies to, a priority and a
//! definition. Definitions are validated here with RabbitMQ 3.10's keys
//! and error texts. At most one policy and one operator policy apply to an
//! object: the highest priority wins; among equal priorities the name that
//! sorts first (RabbitMQ leaves a tie to the order of its table).
//!
//! This module only computes: the virtual host stores the policies and
//! applies the effective arguments to its queues and exchanges when a
//! policy changes, so nothing here runs per message.

use std::cmp::Ordering;
use std::sync::Arc;

use regex::Regex;
use serde_json::{Map, Number, Value, json};

use crate::queue::{Overflow, QueueArgs, QueueType};

/// A policy or an operator policy (RabbitMQ's two parameter components).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyKind {
    Policy,
    Operator,
}

impl PolicyKind {
    /// RabbitMQ's component name.
    pub fn component(self) -> &'static str {
        match self {
            PolicyKind::Policy => "policy",
            PolicyKind::Operator => "operator_policy",
        }
    }

    pub fn from_component(name: &str) -> Option<PolicyKind> {
        match name {
            "policy" => Some(PolicyKind::Policy),
            "operator_policy" => Some(PolicyKind::Operator),
            _ => None,
        }
    }
}

/// What a policy applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyTo {
    Queues,
    Exchanges,
    All,
    ClassicQueues,
    QuorumQueues,
    Streams,
}

impl ApplyTo {
    pub fn name(self) -> &'static str {
        match self {
            ApplyTo::Queues => "queues",
            ApplyTo::Exchanges => "exchanges",
            ApplyTo::All => "all",
            ApplyTo::ClassicQueues => "classic_queues",
            ApplyTo::QuorumQueues => "quorum_queues",
            ApplyTo::Streams => "streams",
        }
    }

    pub fn parse(name: &str) -> Option<ApplyTo> {
        [
            ApplyTo::Queues,
            ApplyTo::Exchanges,
            ApplyTo::All,
            ApplyTo::ClassicQueues,
            ApplyTo::QuorumQueues,
            ApplyTo::Streams,
        ]
        .into_iter()
        .find(|a| a.name() == name)
    }

    fn queue(self, kind: QueueType) -> bool {
        match self {
            ApplyTo::Queues | ApplyTo::All => true,
            ApplyTo::ClassicQueues => kind == QueueType::Classic,
            ApplyTo::QuorumQueues => kind == QueueType::Quorum,
            ApplyTo::Exchanges | ApplyTo::Streams => false,
        }
    }

    fn exchange(self) -> bool {
        matches!(self, ApplyTo::Exchanges | ApplyTo::All)
    }
}

/// Why a policy was refused. The texts are RabbitMQ's.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// A field the request must carry is missing (the management API's
    /// own check, before validation).
    #[error("[{{key_missing,{0}}}]")]
    KeyMissing(&'static str),
    /// RabbitMQ's validation message ("-1 is not a valid message TTL").
    #[error("Validation failed\n\n{0}\n")]
    Invalid(String),
    #[error("no such vhost '{0}'")]
    NoSuchVHost(String),
    #[error("no such {kind} '{name}' in vhost '{vhost}'", kind = .kind.component())]
    NotFound {
        kind: PolicyKind,
        vhost: String,
        name: String,
    },
    #[error("cannot store the policy: {0}")]
    Store(String),
}

impl PolicyError {
    /// The request named something missing (HTTP 404).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            PolicyError::NoSuchVHost(_) | PolicyError::NotFound { .. }
        )
    }
}

/// A validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub kind: PolicyKind,
    pub vhost: String,
    pub name: String,
    pub pattern: String,
    regex: Regex,
    pub apply_to: ApplyTo,
    /// A JSON number, as given (RabbitMQ accepts floats).
    pub priority: Number,
    /// Keys in order.
    pub definition: Map<String, Value>,
}

impl PartialEq for Policy {
    fn eq(&self, other: &Policy) -> bool {
        self.kind == other.kind
            && self.vhost == other.vhost
            && self.name == other.name
            && self.pattern == other.pattern
            && self.apply_to == other.apply_to
            && self.priority == other.priority
            && self.definition == other.definition
    }
}

/// Erlang's `~p` of a decoded JSON value, as RabbitMQ's messages print it.
pub fn erlang_term(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) => erlang_float(f),
            _ => n.to_string(),
        },
        Value::String(s) => format!("<<{s:?}>>"),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(erlang_term).collect::<Vec<_>>().join(",")
        ),
        Value::Object(map) => format!(
            "#{{{}}}",
            map.iter()
                .map(|(k, v)| format!("<<{k:?}>> => {}", erlang_term(v)))
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

/// Erlang prints floats in their shortest form, with an exponent from 1e3
/// on ("1.0e3"), and always with a fraction ("2.0").
fn erlang_float(f: f64) -> String {
    if f != 0.0 && (f.abs() >= 1e3 || f.abs() < 1e-3) {
        let s = format!("{f:e}");
        let (mantissa, exponent) = s.split_once('e').unwrap_or((&s, "0"));
        let mantissa = if mantissa.contains('.') {
            mantissa.to_string()
        } else {
            format!("{mantissa}.0")
        };
        format!("{mantissa}e{exponent}")
    } else {
        let s = format!("{f}");
        if s.contains('.') { s } else { format!("{s}.0") }
    }
}

fn invalid(value: &Value, what: &str) -> PolicyError {
    PolicyError::Invalid(format!("{} is not a valid {what}", erlang_term(value)))
}

fn non_negative(value: &Value) -> Option<u64> {
    value.as_u64()
}

/// The keys RabbitMQ 3.10 accepts in a policy, with their validators.
fn validate_policy_key(key: &str, value: &Value) -> Option<Result<(), PolicyError>> {
    let string = |what: &str| match value {
        Value::String(_) => Ok(()),
        _ => Err(invalid(value, what)),
    };
    let one_of = |choices: &[&str], what: &str| match value.as_str() {
        Some(s) if choices.contains(&s) => Ok(()),
        _ => Err(invalid(value, what)),
    };
    let count = |what: &str| match non_negative(value) {
        Some(_) => Ok(()),
        None => Err(invalid(value, what)),
    };
    Some(match key {
        "alternate-exchange" => string("alternate exchange name"),
        "dead-letter-exchange" => string("dead letter exchange name"),
        "dead-letter-routing-key" => string("dead letter routing key"),
        "dead-letter-strategy" => {
            one_of(&["at-most-once", "at-least-once"], "dead letter strategy")
        }
        "message-ttl" => count("message TTL"),
        "expires" => match non_negative(value) {
            Some(n) if n >= 1 => Ok(()),
            _ => Err(invalid(value, "queue expiry")),
        },
        "max-length" => count("maximum length"),
        "max-length-bytes" => count("maximum length in bytes"),
        "max-in-memory-length" | "max-in-memory-bytes" => count("maximum memory in bytes"),
        "delivery-limit" => count("delivery limit"),
        "queue-mode" => one_of(&["default", "lazy"], "queue-mode value"),
        "queue-version" => match value.as_u64() {
            Some(1 | 2) => Ok(()),
            _ => Err(invalid(value, "queue-version value")),
        },
        "overflow" => one_of(
            &["drop-head", "reject-publish", "reject-publish-dlx"],
            "overflow value",
        ),
        "max-age" => match value.as_str() {
            Some(s) if valid_max_age(s) => Ok(()),
            _ => Err(invalid(value, "max age")),
        },
        "stream-max-segment-size-bytes" => count("segment size"),
        "queue-leader-locator" => one_of(
            &["client-local", "random", "least-leaders"],
            "queue leader locator value",
        ),
        "initial-cluster-size" => count("cluster size"),
        "ha-mode" => one_of(&["all", "exactly", "nodes"], "ha-mode value"),
        // Mirroring settings: accepted (a definitions file may carry them)
        // and without effect, as mirroring has no meaning on one node.
        "ha-params"
        | "ha-sync-mode"
        | "ha-sync-batch-size"
        | "ha-promote-on-shutdown"
        | "ha-promote-on-failure" => Ok(()),
        "queue-master-locator" => match value.as_str() {
            Some("min-masters" | "client-local" | "random") => Ok(()),
            _ => Err(PolicyError::Invalid(format!(
                "{} invalid queue-master-locator value",
                erlang_term(value)
            ))),
        },
        _ => return None,
    })
}

/// The keys an operator policy may set (numeric caps).
const OPERATOR_KEYS: &[&str] = &[
    "expires",
    "message-ttl",
    "max-length",
    "max-length-bytes",
    "max-in-memory-length",
    "max-in-memory-bytes",
    "delivery-limit",
];

/// `^[0-9]+(Y|M|D|h|m|s)$`, RabbitMQ's stream retention format.
fn valid_max_age(s: &str) -> bool {
    let Some(unit) = s.chars().last() else {
        return false;
    };
    let digits = &s[..s.len() - unit.len_utf8()];
    "YMDhms".contains(unit) && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Validate a definition: each known key (in key order), then the unknown ones.
fn validate_definition(
    kind: PolicyKind,
    definition: &Map<String, Value>,
) -> Result<(), PolicyError> {
    if definition.is_empty() {
        return Err(PolicyError::Invalid("no policy provided".into()));
    }
    let mut keys: Vec<&String> = definition.keys().collect();
    keys.sort();
    let mut unknown = Vec::new();
    for key in keys {
        let value = &definition[key];
        let allowed = kind == PolicyKind::Policy || OPERATOR_KEYS.contains(&key.as_str());
        match validate_policy_key(key, value).filter(|_| allowed) {
            Some(result) => result?,
            None => unknown.push(format!("{{<<{key:?}>>,{}}}", erlang_term(value))),
        }
    }
    if !unknown.is_empty() {
        return Err(PolicyError::Invalid(format!(
            "[{}] are not recognised policy settings",
            unknown.join(",")
        )));
    }
    Ok(())
}

impl Policy {
    /// Validate a policy as `PUT /api/policies/{vhost}/{name}` gives it:
    /// `{"pattern", "definition", "priority"?, "apply-to"?}`.
    pub fn parse(
        kind: PolicyKind,
        vhost: &str,
        name: &str,
        body: &Value,
    ) -> Result<Policy, PolicyError> {
        let pattern = body
            .get("pattern")
            .ok_or(PolicyError::KeyMissing("pattern"))?;
        let definition = body
            .get("definition")
            .ok_or(PolicyError::KeyMissing("definition"))?;
        let priority = match body.get("priority") {
            None => Number::from(0),
            Some(Value::Number(n)) => n.clone(),
            Some(other) => {
                return Err(PolicyError::Invalid(format!(
                    "priority should be a number, actually was {}",
                    erlang_term(other)
                )));
            }
        };
        let Value::String(pattern) = pattern else {
            return Err(PolicyError::Invalid(format!(
                "pattern should be a binary but was {}",
                erlang_term(pattern)
            )));
        };
        let regex = Regex::new(pattern).map_err(|e| {
            PolicyError::Invalid(format!(
                "pattern should be regular expression but is invalid: {}",
                first_line(&e.to_string())
            ))
        })?;
        let apply_to = match body.get("apply-to") {
            None => ApplyTo::All,
            Some(v) => v.as_str().and_then(ApplyTo::parse).ok_or_else(|| {
                PolicyError::Invalid(format!(
                    "apply-to '{}' unrecognised; should be 'queues', 'classic_queues', \
                     'quorum_queues', 'streams', 'exchanges' or 'all'",
                    v.as_str().map_or_else(|| erlang_term(v), str::to_string)
                ))
            })?,
        };
        let Value::Object(definition) = definition else {
            return Err(PolicyError::Invalid(format!(
                "definition should be a JSON object but was {}",
                erlang_term(definition)
            )));
        };
        validate_definition(kind, definition)?;
        Ok(Policy {
            kind,
            vhost: vhost.to_string(),
            name: name.to_string(),
            pattern: pattern.clone(),
            regex,
            apply_to,
            priority,
            definition: definition.clone(),
        })
    }

    /// The body that [`Policy::parse`] reads back.
    pub fn body(&self) -> Value {
        json!({
            "pattern": self.pattern,
            "apply-to": self.apply_to.name(),
            "definition": self.definition,
            "priority": self.priority,
        })
    }

    /// As RabbitMQ's management API and definitions list it.
    pub fn to_json(&self) -> Value {
        json!({
            "vhost": self.vhost,
            "name": self.name,
            "pattern": self.pattern,
            "apply-to": self.apply_to.name(),
            "definition": self.definition,
            "priority": self.priority,
        })
    }

    fn priority(&self) -> f64 {
        self.priority.as_f64().unwrap_or(0.0)
    }

    /// Whether the policy applies to queue `name` of type `kind`.
    pub fn matches_queue(&self, name: &str, kind: QueueType) -> bool {
        self.apply_to.queue(kind) && self.regex.is_match(name)
    }

    /// Whether the policy applies to exchange `name`.
    pub fn matches_exchange(&self, name: &str) -> bool {
        self.apply_to.exchange() && self.regex.is_match(name)
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.definition.get(key)
    }

    fn number(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(Value::as_u64)
    }

    fn text(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or(s)
        .to_string()
}

/// Which of two matching policies wins: higher priority, then the name
/// that sorts first.
fn precedence(a: &Policy, b: &Policy) -> Ordering {
    b.priority()
        .partial_cmp(&a.priority())
        .unwrap_or(Ordering::Equal)
        .then_with(|| a.name.cmp(&b.name))
}

/// The policies of one virtual host, each kind kept in precedence order.
#[derive(Debug, Default, Clone)]
pub struct PolicySet {
    policies: Vec<Arc<Policy>>,
    operator: Vec<Arc<Policy>>,
}

impl PolicySet {
    fn list_mut(&mut self, kind: PolicyKind) -> &mut Vec<Arc<Policy>> {
        match kind {
            PolicyKind::Policy => &mut self.policies,
            PolicyKind::Operator => &mut self.operator,
        }
    }

    /// The policies of `kind`, in precedence order.
    pub fn list(&self, kind: PolicyKind) -> &[Arc<Policy>] {
        match kind {
            PolicyKind::Policy => &self.policies,
            PolicyKind::Operator => &self.operator,
        }
    }

    pub fn get(&self, kind: PolicyKind, name: &str) -> Option<&Arc<Policy>> {
        self.list(kind).iter().find(|p| p.name == name)
    }

    /// Add or replace a policy.
    pub fn put(&mut self, policy: Policy) {
        let list = self.list_mut(policy.kind);
        list.retain(|p| p.name != policy.name);
        list.push(Arc::new(policy));
        list.sort_by(|a, b| precedence(a, b));
    }

    /// Remove a policy; returns whether it existed.
    pub fn remove(&mut self, kind: PolicyKind, name: &str) -> bool {
        let list = self.list_mut(kind);
        let before = list.len();
        list.retain(|p| p.name != name);
        list.len() != before
    }

    /// The policy and operator policy that apply to a queue.
    pub fn for_queue(&self, name: &str, kind: QueueType) -> Applied {
        let first =
            |list: &[Arc<Policy>]| list.iter().find(|p| p.matches_queue(name, kind)).cloned();
        Applied {
            policy: first(&self.policies),
            operator: first(&self.operator),
        }
    }

    /// The policy that applies to an exchange.
    pub fn for_exchange(&self, name: &str) -> Option<Arc<Policy>> {
        self.policies
            .iter()
            .find(|p| p.matches_exchange(name))
            .cloned()
    }
}

/// The policies applied to a queue.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub policy: Option<Arc<Policy>>,
    pub operator: Option<Arc<Policy>>,
}

impl Applied {
    /// Whether two applications differ (by the policies' contents).
    pub fn same(&self, other: &Applied) -> bool {
        let eq = |a: &Option<Arc<Policy>>, b: &Option<Arc<Policy>>| match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
            _ => false,
        };
        eq(&self.policy, &other.policy) && eq(&self.operator, &other.operator)
    }

    /// The definition RabbitMQ reports as `effective_policy_definition`:
    /// the policy's keys, with the operator policy's caps merged in (the
    /// lower value wins).
    pub fn effective_definition(&self) -> Map<String, Value> {
        let mut merged = self
            .policy
            .as_ref()
            .map(|p| p.definition.clone())
            .unwrap_or_default();
        if let Some(op) = &self.operator {
            for (key, value) in &op.definition {
                let lower = match (merged.get(key).and_then(Value::as_u64), value.as_u64()) {
                    (Some(current), Some(cap)) => cap < current,
                    _ => true,
                };
                if lower {
                    merged.insert(key.clone(), value.clone());
                }
            }
        }
        merged
    }

    /// A numeric key: the lower of the policy's and the operator policy's.
    fn number(&self, key: &str) -> Option<u64> {
        let p = self.policy.as_ref().and_then(|p| p.number(key));
        let o = self.operator.as_ref().and_then(|p| p.number(key));
        lower(p, o)
    }

    fn text(&self, key: &str) -> Option<&str> {
        self.policy.as_ref().and_then(|p| p.text(key))
    }
}

fn lower(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn overflow(name: &str) -> Option<Overflow> {
    match name {
        "drop-head" => Some(Overflow::DropHead),
        "reject-publish" => Some(Overflow::RejectPublish),
        "reject-publish-dlx" => Some(Overflow::RejectPublishDlx),
        _ => None,
    }
}

/// A queue's effective arguments: its declared ones with the policies
/// applied as RabbitMQ resolves each key. Numeric limits (`message-ttl`,
/// `expires`, `max-length`, `max-length-bytes`, `delivery-limit`) take the
/// lowest of the argument, the policy and the operator policy; the
/// dead-letter exchange and routing key come from the argument when it is
/// set; `overflow` from the argument for classic queues, from the policy
/// for quorum queues.
pub fn effective_queue_args(
    declared: &QueueArgs,
    overflow_declared: bool,
    applied: &Applied,
) -> QueueArgs {
    let mut args = declared.clone();
    args.message_ttl = lower(declared.message_ttl, applied.number("message-ttl"));
    args.expires = lower(declared.expires, applied.number("expires"));
    args.max_length = lower(declared.max_length, applied.number("max-length"));
    args.max_length_bytes = lower(
        declared.max_length_bytes,
        applied.number("max-length-bytes"),
    );
    if declared.is_quorum() {
        args.delivery_limit = lower(declared.delivery_limit, applied.number("delivery-limit"));
    }
    if declared.dead_letter_exchange.is_none() {
        args.dead_letter_exchange = applied.text("dead-letter-exchange").map(str::to_string);
    }
    if declared.dead_letter_routing_key.is_none() {
        args.dead_letter_routing_key = applied.text("dead-letter-routing-key").map(str::to_string);
    }
    let from_policy = applied.text("overflow").and_then(overflow);
    if let Some(mode) = from_policy
        && (declared.is_quorum() || !overflow_declared)
    {
        args.overflow = mode;
    }
    args
}

/// An exchange's alternate exchange: its argument, else its policy's.
pub fn effective_alternate(declared: Option<&str>, policy: Option<&Policy>) -> Option<String> {
    declared.map(str::to_string).or_else(|| {
        policy
            .and_then(|p| p.text("alternate-exchange"))
            .map(str::to_string)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(kind: PolicyKind, body: Value) -> Result<Policy, PolicyError> {
        Policy::parse(kind, "/", "p", &body)
    }

    fn error(body: Value) -> String {
        match parse(PolicyKind::Policy, body) {
            Err(PolicyError::Invalid(text)) => text,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn refuses_like_rabbitmq() {
        let d = |definition: Value| json!({"pattern": "^x", "definition": definition});
        assert_eq!(
            error(d(json!({"message-ttl": -1}))),
            "-1 is not a valid message TTL"
        );
        assert_eq!(
            error(d(json!({"message-ttl": "a"}))),
            "<<\"a\">> is not a valid message TTL"
        );
        assert_eq!(
            error(d(json!({"expires": 0}))),
            "0 is not a valid queue expiry"
        );
        assert_eq!(
            error(d(json!({"max-length": 1.5}))),
            "1.5 is not a valid maximum length"
        );
        assert_eq!(
            error(d(json!({"max-length": 1e3}))),
            "1.0e3 is not a valid maximum length"
        );
        assert_eq!(
            error(d(json!({"max-length": [1, "a"]}))),
            "[1,<<\"a\">>] is not a valid maximum length"
        );
        assert_eq!(
            error(d(json!({"foo": 1, "bar": 2}))),
            "[{<<\"bar\">>,2},{<<\"foo\">>,1}] are not recognised policy settings"
        );
        assert_eq!(
            error(d(json!({"message-ttl": 1, "max-length": -1, "foo": 1}))),
            "-1 is not a valid maximum length"
        );
        assert_eq!(error(d(json!({}))), "no policy provided");
        assert_eq!(
            error(d(json!({"max-age": "1X"}))),
            "<<\"1X\">> is not a valid max age"
        );
        assert_eq!(
            error(json!({"pattern": "^x", "priority": "5", "definition": {"max-length": 1}})),
            "priority should be a number, actually was <<\"5\">>"
        );
        assert_eq!(
            error(json!({"pattern": 1, "definition": {"max-length": 1}})),
            "pattern should be a binary but was 1"
        );
        assert!(
            error(json!({"pattern": "(", "definition": {"max-length": 1}}))
                .starts_with("pattern should be regular expression but is invalid: ")
        );
        assert!(
            error(json!({"pattern": "x", "apply-to": "foo", "definition": {"max-length": 1}}))
                .starts_with("apply-to 'foo' unrecognised; should be 'queues', ")
        );
        assert_eq!(
            parse(PolicyKind::Policy, json!({"definition": {}})).unwrap_err(),
            PolicyError::KeyMissing("pattern")
        );
        assert_eq!(
            parse(
                PolicyKind::Operator,
                json!({"pattern": "x", "definition": {"message-ttl": 1, "dead-letter-exchange": "d"}})
            )
            .unwrap_err()
            .to_string(),
            "Validation failed\n\n[{<<\"dead-letter-exchange\">>,<<\"d\">>}] are not recognised policy settings\n"
        );
    }

    fn policy(name: &str, priority: i64, definition: Value) -> Policy {
        Policy::parse(
            PolicyKind::Policy,
            "/",
            name,
            &json!({"pattern": "^q", "priority": priority, "definition": definition}),
        )
        .unwrap()
    }

    #[test]
    fn highest_priority_then_first_name_wins() {
        let mut set = PolicySet::default();
        set.put(policy("zz", 0, json!({"max-length": 1})));
        set.put(policy("aa", 0, json!({"max-length": 2})));
        assert_eq!(
            set.for_queue("q1", QueueType::Classic).policy.unwrap().name,
            "aa"
        );
        set.put(policy("mm", 1, json!({"max-length": 3})));
        assert_eq!(
            set.for_queue("q1", QueueType::Classic).policy.unwrap().name,
            "mm"
        );
        assert!(set.for_queue("x", QueueType::Classic).policy.is_none());
        assert!(set.remove(PolicyKind::Policy, "mm"));
        assert_eq!(
            set.for_queue("q1", QueueType::Classic).policy.unwrap().name,
            "aa"
        );
    }

    #[test]
    fn arguments_and_caps_resolve_like_rabbitmq() {
        let declared = QueueArgs {
            message_ttl: Some(50_000),
            max_length: Some(10),
            dead_letter_exchange: Some("arg".into()),
            ..QueueArgs::default()
        };
        let applied = Applied {
            policy: Some(Arc::new(policy(
                "p",
                0,
                json!({"message-ttl": 100_000, "max-length": 3, "dead-letter-exchange": "pol",
                       "dead-letter-routing-key": "k", "overflow": "reject-publish", "expires": 9000}),
            ))),
            operator: Some(Arc::new(
                Policy::parse(
                    PolicyKind::Operator,
                    "/",
                    "op",
                    &json!({"pattern": ".*", "definition": {"expires": 5000}}),
                )
                .unwrap(),
            )),
        };
        let args = effective_queue_args(&declared, true, &applied);
        assert_eq!(args.message_ttl, Some(50_000));
        assert_eq!(args.max_length, Some(3));
        assert_eq!(args.dead_letter_exchange.as_deref(), Some("arg"));
        assert_eq!(args.dead_letter_routing_key.as_deref(), Some("k"));
        assert_eq!(args.overflow, Overflow::DropHead);
        assert_eq!(args.expires, Some(5000));
        assert_eq!(applied.effective_definition()["expires"], json!(5000));
    }
}
