//! RabbitMQ's definitions JSON: export the broker (or one vhost) as
//! `GET /api/definitions` does, and import such a file as
//! `POST /api/definitions` does.
//!
//! An import reads the whole file into a plan and checks every entry (names,
//! password hashes, patterns, policies, queue arguments, that permissions,
//! bindings and policies name users, vhosts, queues and exchanges that exist
//! or that the file creates) before it changes anything; the first problem
//! is reported with its section, position and name. Applying is idempotent:
//! users, permissions, limits and policies are set again, and queues,
//! exchanges and bindings that exist are left as they are (RabbitMQ does
//! the same).
//!
//! Front doors: `--definitions FILE` at start ([`load_file`]), the
//! `warren export-definitions` command, and later the HTTP API.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use serde_json::{Map, Value, json};

use crate::access::pattern::Pattern;
use crate::access::{
    Credentials, HashingAlgorithm, PasswordHash, UserLimits, UserSpec, VHostLimits, VHostMetadata,
};
use crate::broker::Broker;
use crate::policy::{Policy, PolicyKind};
use crate::queue::QueueArgs;
use crate::vhost::{BindTarget, ExchangeSpec, NoGuard, QueueSpec, check_exchange_type};

/// The RabbitMQ version whose format the export follows.
pub const RABBIT_VERSION: &str = "3.10.8";

/// Why definitions could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionsError {
    /// The file is not what RabbitMQ would accept; nothing was changed.
    #[error("invalid definitions: {0}")]
    Invalid(String),
    /// Applying a checked file failed (the store, say).
    #[error("cannot apply definitions: {0}")]
    Apply(String),
    #[error("cannot read definitions from {path}: {why}")]
    Read { path: String, why: String },
}

/// How many entries of each kind an import applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    pub users: usize,
    pub vhosts: usize,
    pub permissions: usize,
    pub topic_permissions: usize,
    pub parameters: usize,
    pub policies: usize,
    pub queues: usize,
    pub exchanges: usize,
    pub bindings: usize,
}

// ---- field tables <-> JSON ---------------------------------------------

/// A field table as JSON, as RabbitMQ's management API shows arguments.
pub fn table_to_json(table: &FieldTable) -> Value {
    Value::Object(
        table
            .inner()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), value_to_json(v)))
            .collect(),
    )
}

/// One AMQP value as JSON, as the management API shows it.
pub fn value_to_json(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::Boolean(b) => json!(b),
        AMQPValue::ShortShortInt(n) => json!(n),
        AMQPValue::ShortShortUInt(n) => json!(n),
        AMQPValue::ShortInt(n) => json!(n),
        AMQPValue::ShortUInt(n) => json!(n),
        AMQPValue::LongInt(n) => json!(n),
        AMQPValue::LongUInt(n) => json!(n),
        AMQPValue::LongLongInt(n) => json!(n),
        AMQPValue::Timestamp(n) => json!(n),
        AMQPValue::Float(f) => json!(f),
        AMQPValue::Double(f) => json!(f),
        AMQPValue::DecimalValue(d) => json!(d.value as f64 / 10f64.powi(d.scale as i32)),
        AMQPValue::ShortString(s) => json!(s.as_str()),
        AMQPValue::LongString(s) => json!(String::from_utf8_lossy(s.as_bytes())),
        AMQPValue::ByteArray(b) => json!(String::from_utf8_lossy(b.as_slice())),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(value_to_json).collect()),
        AMQPValue::FieldTable(t) => table_to_json(t),
        AMQPValue::Void => Value::Null,
    }
}

/// JSON arguments as a field table, typed as RabbitMQ's management API
/// types them (integers as 64-bit signed, text as long strings).
pub fn json_to_table(value: &Value) -> Result<FieldTable, String> {
    let Value::Object(map) = value else {
        return Err(format!("arguments must be a JSON object, not {value}"));
    };
    let mut table = FieldTable::default();
    for (k, v) in map {
        table.insert(ShortString::from(k.as_str()), json_to_value(v)?);
    }
    Ok(table)
}

fn json_to_value(value: &Value) -> Result<AMQPValue, String> {
    Ok(match value {
        Value::Null => AMQPValue::Void,
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => AMQPValue::LongLongInt(i),
            (None, Some(f)) => AMQPValue::Double(f),
            _ => return Err(format!("number {n} is out of range")),
        },
        Value::String(s) => AMQPValue::LongString(LongString::from(s.as_str())),
        Value::Array(items) => AMQPValue::FieldArray(FieldArray::from(
            items
                .iter()
                .map(json_to_value)
                .collect::<Result<Vec<_>, _>>()?,
        )),
        Value::Object(_) => AMQPValue::FieldTable(json_to_table(value)?),
    })
}

// ---- export ------------------------------------------------------------

/// The broker's definitions (`vhost` None), or one vhost's, in RabbitMQ's
/// format. Exclusive queues are left out, as are the default exchange, the
/// `amq.*` exchanges, and the default exchange's implicit bindings.
pub fn export(broker: &Broker, vhost: Option<&str>) -> Value {
    let vhosts: Vec<String> = match vhost {
        Some(name) => broker
            .vhost(name)
            .map(|_| vec![name.to_string()])
            .unwrap_or_default(),
        None => broker.vhost_names(),
    };
    let per_vhost = vhost.is_some();
    // Items of a one-vhost export do not name their vhost.
    let tag = |mut item: Map<String, Value>, name: &str| {
        if !per_vhost {
            item.insert("vhost".into(), json!(name));
        }
        Value::Object(item)
    };
    let mut parameters = Vec::new();
    let mut policies = Vec::new();
    let mut queues = Vec::new();
    let mut exchanges = Vec::new();
    let mut bindings = Vec::new();
    for name in &vhosts {
        let Some(host) = broker.vhost(name) else {
            continue;
        };
        if let Some(info) = broker.access.vhost(name) {
            let limits = info.limits.to_map();
            if !limits.is_empty() {
                parameters.push(tag(
                    object(json!({"value": limits, "component": "vhost-limits", "name": "limits"})),
                    name,
                ));
            }
        }
        for op in host.policies(PolicyKind::Operator) {
            parameters.push(tag(
                object(
                    json!({"value": op.body(), "component": "operator_policy", "name": op.name}),
                ),
                name,
            ));
        }
        let mut listed = host.policies(PolicyKind::Policy);
        listed.sort_by(|a, b| a.name.cmp(&b.name));
        for p in listed {
            let mut item = object(p.to_json());
            item.remove("vhost");
            policies.push(tag(item, name));
        }
        let mut qs = host.queues();
        qs.sort_by(|a, b| a.name.cmp(&b.name));
        for q in qs.iter().filter(|q| q.exclusive_owner.is_none()) {
            queues.push(tag(
                object(json!({
                    "name": &*q.name,
                    "durable": q.durable,
                    "auto_delete": q.auto_delete,
                    "arguments": table_to_json(&q.arguments),
                })),
                name,
            ));
        }
        let exclusive: HashSet<&str> = qs
            .iter()
            .filter(|q| q.exclusive_owner.is_some())
            .map(|q| &*q.name)
            .collect();
        for (x, durable) in host.exchange_records() {
            if x.name.starts_with("amq.") {
                continue;
            }
            exchanges.push(tag(
                object(json!({
                    "name": x.name,
                    "type": x.kind,
                    "durable": durable,
                    "auto_delete": x.auto_delete,
                    "internal": x.internal,
                    "arguments": table_to_json(&x.arguments),
                })),
                name,
            ));
        }
        for b in host.binding_records() {
            if b.destination_type == "queue" && exclusive.contains(b.destination.as_str()) {
                continue;
            }
            bindings.push(tag(
                object(json!({
                    "source": b.source,
                    "destination": b.destination,
                    "destination_type": b.destination_type,
                    "routing_key": b.routing_key,
                    "arguments": table_to_json(&b.arguments),
                })),
                name,
            ));
        }
    }
    let mut out = Map::new();
    out.insert("rabbit_version".into(), json!(RABBIT_VERSION));
    if !per_vhost {
        out.insert("rabbitmq_version".into(), json!(RABBIT_VERSION));
        out.insert("product_name".into(), json!("Warren"));
        out.insert("product_version".into(), json!(env!("CARGO_PKG_VERSION")));
        out.insert("users".into(), export_users(broker));
        out.insert("vhosts".into(), export_vhosts(broker));
        out.insert("permissions".into(), export_permissions(broker));
        out.insert("topic_permissions".into(), export_topic_permissions(broker));
    }
    out.insert("parameters".into(), Value::Array(parameters));
    if !per_vhost {
        out.insert("global_parameters".into(), json!([]));
    }
    out.insert("policies".into(), Value::Array(policies));
    out.insert("queues".into(), Value::Array(queues));
    out.insert("exchanges".into(), Value::Array(exchanges));
    out.insert("bindings".into(), Value::Array(bindings));
    Value::Object(out)
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn export_users(broker: &Broker) -> Value {
    Value::Array(
        broker
            .access
            .users()
            .into_iter()
            .map(|u| {
                json!({
                    "name": u.name,
                    "password_hash": u.password_hash,
                    "hashing_algorithm": u.hashing_algorithm.name(),
                    "tags": u.tags,
                    "limits": u.limits.to_map(),
                })
            })
            .collect(),
    )
}

fn export_vhosts(broker: &Broker) -> Value {
    Value::Array(
        broker
            .access
            .vhosts()
            .into_iter()
            .map(|v| {
                let mut item = Map::new();
                item.insert("name".into(), json!(v.name));
                let m = &v.metadata;
                if let Some(d) = &m.description {
                    item.insert("description".into(), json!(d));
                }
                if !m.tags.is_empty() {
                    item.insert("tags".into(), json!(m.tags));
                }
                if let Some(t) = m.default_queue_type {
                    item.insert("default_queue_type".into(), json!(t.name()));
                    item.insert("metadata".into(), json!({"default_queue_type": t.name()}));
                }
                Value::Object(item)
            })
            .collect(),
    )
}

fn export_permissions(broker: &Broker) -> Value {
    Value::Array(
        broker
            .access
            .permissions()
            .into_iter()
            .map(|p| {
                json!({"user": p.user, "vhost": p.vhost, "configure": p.configure,
                       "write": p.write, "read": p.read})
            })
            .collect(),
    )
}

fn export_topic_permissions(broker: &Broker) -> Value {
    Value::Array(
        broker
            .access
            .topic_permissions()
            .into_iter()
            .map(|p| {
                json!({"user": p.user, "vhost": p.vhost, "exchange": p.exchange,
                       "write": p.write, "read": p.read})
            })
            .collect(),
    )
}

// ---- import ------------------------------------------------------------

/// Everything a file asks for, checked.
#[derive(Debug, Default)]
struct Plan {
    users: Vec<(String, UserSpec)>,
    /// With metadata when the file gives any.
    vhosts: Vec<(String, Option<VHostMetadata>)>,
    permissions: Vec<[String; 5]>,
    topic_permissions: Vec<[String; 5]>,
    vhost_limits: Vec<(String, VHostLimits)>,
    policies: Vec<(PolicyKind, String, String, Value)>,
    queues: Vec<(String, QueueSpec)>,
    exchanges: Vec<(String, ExchangeSpec)>,
    bindings: Vec<Bind>,
}

#[derive(Debug)]
struct Bind {
    vhost: String,
    source: String,
    destination: String,
    to_queue: bool,
    routing_key: String,
    arguments: FieldTable,
}

/// One entry of a section, for error messages: "queues[3] ('orders')".
struct Entry<'a> {
    section: &'static str,
    index: usize,
    item: &'a Value,
}

impl Entry<'_> {
    fn fail(&self, why: impl std::fmt::Display) -> DefinitionsError {
        let name = self
            .item
            .get("name")
            .or_else(|| self.item.get("user"))
            .or_else(|| self.item.get("source"))
            .and_then(Value::as_str);
        DefinitionsError::Invalid(match name {
            Some(name) => format!("{}[{}] ('{name}'): {why}", self.section, self.index),
            None => format!("{}[{}]: {why}", self.section, self.index),
        })
    }

    fn text(&self, key: &str) -> Result<String, DefinitionsError> {
        match self.item.get(key) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(self.fail(format!("'{key}' must be a string, not {other}"))),
            None => Err(self.fail(format!("'{key}' is missing"))),
        }
    }

    fn text_or(&self, key: &str, default: &str) -> Result<String, DefinitionsError> {
        match self.item.get(key) {
            None | Some(Value::Null) => Ok(default.to_string()),
            Some(_) => self.text(key),
        }
    }

    fn flag(&self, key: &str, default: bool) -> Result<bool, DefinitionsError> {
        match self.item.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            // Old exports wrote some flags as strings.
            Some(Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
            Some(other) => Err(self.fail(format!("'{key}' must be true or false, not {other}"))),
        }
    }

    fn arguments(&self) -> Result<FieldTable, DefinitionsError> {
        match self.item.get("arguments") {
            None | Some(Value::Null) => Ok(FieldTable::default()),
            Some(v) => json_to_table(v).map_err(|e| self.fail(e)),
        }
    }

    /// The vhost an entry belongs to: its own, or the one imported into.
    fn vhost(&self, into: Option<&str>) -> Result<String, DefinitionsError> {
        match into {
            Some(v) => Ok(v.to_string()),
            None => self.text("vhost"),
        }
    }
}

/// Tags as a list or as RabbitMQ's older comma-separated string.
fn tags(entry: &Entry<'_>) -> Result<Vec<String>, DefinitionsError> {
    match entry.item.get("tags") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(crate::access::user::parse_tags(s)),
        Some(Value::Array(items)) => items
            .iter()
            .map(|t| {
                t.as_str()
                    .map(|s| s.trim().to_string())
                    .ok_or_else(|| entry.fail(format!("tag {t} is not a string")))
            })
            .filter(|t| !matches!(t, Ok(s) if s.is_empty()))
            .collect(),
        Some(other) => Err(entry.fail(format!("'tags' must be a list, not {other}"))),
    }
}

fn limits_map(
    entry: &Entry<'_>,
    value: Option<&Value>,
) -> Result<BTreeMap<String, i64>, DefinitionsError> {
    match value {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| {
                v.as_i64()
                    .map(|n| (k.clone(), n))
                    .ok_or_else(|| entry.fail(format!("limit '{k}' must be an integer, not {v}")))
            })
            .collect(),
        Some(Value::Array(a)) if a.is_empty() => Ok(BTreeMap::new()),
        Some(other) => Err(entry.fail(format!("limits must be an object, not {other}"))),
    }
}

fn section<'a>(defs: &'a Value, name: &'static str) -> Result<Vec<Entry<'a>>, DefinitionsError> {
    match defs.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items
            .iter()
            .enumerate()
            .map(|(index, item)| Entry {
                section: name,
                index,
                item,
            })
            .collect()),
        Some(other) => Err(DefinitionsError::Invalid(format!(
            "'{name}' must be a list, not {other}"
        ))),
    }
}

/// Import a whole-broker definitions file (RabbitMQ's `POST
/// /api/definitions`). Blocks on the store: call it off the async workers.
pub fn import(broker: &Broker, definitions: &Value) -> Result<Imported, DefinitionsError> {
    let plan = check(broker, definitions, None)?;
    apply(broker, plan)
}

/// Import a one-vhost definitions file into `vhost` (RabbitMQ's `POST
/// /api/definitions/{vhost}`), which must exist.
pub fn import_vhost(
    broker: &Broker,
    vhost: &str,
    definitions: &Value,
) -> Result<Imported, DefinitionsError> {
    if broker.vhost(vhost).is_none() {
        return Err(DefinitionsError::Invalid(format!(
            "vhost '{vhost}' does not exist"
        )));
    }
    let plan = check(broker, definitions, Some(vhost))?;
    apply(broker, plan)
}

/// Read and import a definitions file (`--definitions`, `load_definitions`).
pub fn load_file(broker: &Broker, path: &Path) -> Result<Imported, DefinitionsError> {
    let read = |why: String| DefinitionsError::Read {
        path: path.display().to_string(),
        why,
    };
    let text = std::fs::read_to_string(path).map_err(|e| read(e.to_string()))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| read(format!("not JSON: {e}")))?;
    import(broker, &value)
}

fn check(broker: &Broker, defs: &Value, into: Option<&str>) -> Result<Plan, DefinitionsError> {
    if !defs.is_object() {
        return Err(DefinitionsError::Invalid(
            "definitions must be a JSON object".into(),
        ));
    }
    let mut plan = Plan::default();
    let global = into.is_none();
    let sections: &[&str] = if global {
        &[]
    } else {
        &["users", "vhosts", "permissions", "topic_permissions"]
    };
    for name in sections {
        if defs
            .get(*name)
            .is_some_and(|v| v.as_array().is_some_and(|a| !a.is_empty()))
        {
            return Err(DefinitionsError::Invalid(format!(
                "'{name}' cannot be imported into one vhost"
            )));
        }
    }
    for e in section(defs, "users")? {
        let name = e.text("name")?;
        if name.is_empty() {
            return Err(e.fail("user name must not be empty"));
        }
        let algorithm = match e.item.get("hashing_algorithm") {
            None | Some(Value::Null) => None,
            Some(Value::String(a)) => Some(
                HashingAlgorithm::from_name(a)
                    .ok_or_else(|| e.fail(format!("unknown hashing algorithm '{a}'")))?,
            ),
            Some(other) => {
                return Err(e.fail(format!("'hashing_algorithm' must be a string, not {other}")));
            }
        };
        let credentials = match (e.item.get("password_hash"), e.item.get("password")) {
            (Some(Value::String(hash)), _) => {
                PasswordHash::from_base64(algorithm.unwrap_or_default(), hash)
                    .map_err(|why| e.fail(format!("invalid password hash: {why}")))?;
                Credentials::Hash {
                    hash: hash.clone(),
                    algorithm,
                }
            }
            (_, Some(Value::String(password))) => Credentials::Password(password.clone()),
            (None | Some(Value::Null), None | Some(Value::Null)) => Credentials::None,
            _ => return Err(e.fail("'password_hash' must be a string")),
        };
        let limits = UserLimits::from_map(&limits_map(&e, e.item.get("limits"))?)
            .map_err(|why| e.fail(why))?;
        plan.users.push((
            name,
            UserSpec {
                credentials,
                tags: tags(&e)?,
                limits: Some(limits),
            },
        ));
    }
    for e in section(defs, "vhosts")? {
        let name = e.text("name")?;
        if name.is_empty() {
            return Err(e.fail("vhost name must not be empty"));
        }
        let metadata_in = e.item.get("metadata");
        let queue_type = e
            .item
            .get("default_queue_type")
            .or_else(|| metadata_in.and_then(|m| m.get("default_queue_type")))
            .and_then(Value::as_str)
            .map(|t| crate::access::QueueType::from_name(t).map_err(|why| e.fail(why)))
            .transpose()?;
        let description = e
            .item
            .get("description")
            .or_else(|| metadata_in.and_then(|m| m.get("description")))
            .and_then(Value::as_str)
            .map(str::to_string);
        let tags = tags(&e)?;
        let given = description.is_some() || !tags.is_empty() || queue_type.is_some();
        let metadata = given.then_some(VHostMetadata {
            description,
            tags,
            default_queue_type: queue_type,
        });
        plan.vhosts.push((name, metadata));
    }
    let vhost_known = |plan: &Plan, name: &str| {
        broker.vhost(name).is_some() || plan.vhosts.iter().any(|(v, _)| v == name)
    };
    let user_known = |plan: &Plan, name: &str| {
        broker.access.user_exists(name) || plan.users.iter().any(|(u, _)| u == name)
    };
    for (section_name, topic) in [("permissions", false), ("topic_permissions", true)] {
        for e in section(defs, section_name)? {
            let user = e.text("user")?;
            let vhost = e.text("vhost")?;
            if !user_known(&plan, &user) {
                return Err(e.fail(format!("no such user '{user}'")));
            }
            if !vhost_known(&plan, &vhost) {
                return Err(e.fail(format!("no such vhost '{vhost}'")));
            }
            let first = if topic {
                e.text("exchange")?
            } else {
                e.text("configure")?
            };
            let (write, read) = (e.text("write")?, e.text("read")?);
            let patterns: &[&str] = if topic {
                &[&write, &read]
            } else {
                &[&first, &write, &read]
            };
            for p in patterns {
                Pattern::new(p)
                    .map_err(|why| e.fail(format!("invalid regular expression '{p}': {why}")))?;
            }
            let entry = [user, vhost, first, write, read];
            if topic {
                plan.topic_permissions.push(entry);
            } else {
                plan.permissions.push(entry);
            }
        }
    }
    for e in section(defs, "parameters")? {
        let vhost = e.vhost(into)?;
        if !vhost_known(&plan, &vhost) {
            return Err(e.fail(format!("no such vhost '{vhost}'")));
        }
        let component = e.text("component")?;
        let name = e.text("name")?;
        let value = e.item.get("value").cloned().unwrap_or(Value::Null);
        match component.as_str() {
            "vhost-limits" => {
                let limits = VHostLimits::from_map(&limits_map(&e, Some(&value))?)
                    .map_err(|why| e.fail(why))?;
                plan.vhost_limits.push((vhost, limits));
            }
            "operator_policy" => {
                Policy::parse(PolicyKind::Operator, &vhost, &name, &value)
                    .map_err(|why| e.fail(why))?;
                plan.policies
                    .push((PolicyKind::Operator, vhost, name, value));
            }
            other => {
                return Err(e.fail(format!(
                    "runtime parameter component '{other}' is not supported (it belongs to a plugin Warren does not have)"
                )));
            }
        }
    }
    // Global parameters (cluster_name, internal_cluster_id) describe a
    // RabbitMQ cluster; a single Warren node has nothing to set from them.
    for e in section(defs, "global_parameters")? {
        e.text("name")?;
    }
    for e in section(defs, "policies")? {
        let vhost = e.vhost(into)?;
        let name = e.text("name")?;
        if !vhost_known(&plan, &vhost) {
            return Err(e.fail(format!("no such vhost '{vhost}'")));
        }
        Policy::parse(PolicyKind::Policy, &vhost, &name, e.item).map_err(|why| e.fail(why))?;
        plan.policies
            .push((PolicyKind::Policy, vhost, name, e.item.clone()));
    }
    for e in section(defs, "queues")? {
        let vhost = e.vhost(into)?;
        let name = e.text("name")?;
        if !vhost_known(&plan, &vhost) {
            return Err(e.fail(format!("no such vhost '{vhost}'")));
        }
        if name.is_empty() || name.starts_with("amq.") {
            return Err(e.fail("queue names may not be empty nor start with 'amq.'"));
        }
        let durable = e.flag("durable", true)?;
        let auto_delete = e.flag("auto_delete", false)?;
        let arguments = e.arguments()?;
        let description = format!("queue '{name}' in vhost '{vhost}'");
        let args =
            QueueArgs::parse(&arguments, &description).map_err(|why| e.fail(why.reply_text()))?;
        args.check_flags(&description, durable, false, auto_delete)
            .map_err(|why| e.fail(why.reply_text()))?;
        plan.queues.push((
            vhost,
            QueueSpec {
                name,
                server_named: false,
                durable,
                exclusive: false,
                auto_delete,
                arguments,
            },
        ));
    }
    for e in section(defs, "exchanges")? {
        let vhost = e.vhost(into)?;
        let name = e.text("name")?;
        if !vhost_known(&plan, &vhost) {
            return Err(e.fail(format!("no such vhost '{vhost}'")));
        }
        let kind = e.text_or("type", "direct")?;
        check_exchange_type(&kind).map_err(|why| e.fail(why.reply_text()))?;
        let spec = ExchangeSpec {
            name,
            kind,
            durable: e.flag("durable", true)?,
            auto_delete: e.flag("auto_delete", false)?,
            internal: e.flag("internal", false)?,
            arguments: e.arguments()?,
        };
        // The default and amq.* exchanges exist in every vhost.
        if !spec.name.is_empty() && !spec.name.starts_with("amq.") {
            plan.exchanges.push((vhost, spec));
        }
    }
    for e in section(defs, "bindings")? {
        let vhost = e.vhost(into)?;
        let source = e.text("source")?;
        let destination = e.text("destination")?;
        let to_queue = match e.text_or("destination_type", "queue")?.as_str() {
            "queue" => true,
            "exchange" => false,
            other => return Err(e.fail(format!("unknown destination_type '{other}'"))),
        };
        let host = broker.vhost(&vhost);
        let exchange_known = |name: &str| {
            name.starts_with("amq.")
                || host.as_ref().is_some_and(|h| h.has_exchange(name))
                || plan
                    .exchanges
                    .iter()
                    .any(|(v, x)| *v == vhost && x.name == name)
        };
        let queue_known = |name: &str| {
            host.as_ref().is_some_and(|h| h.has_queue(name))
                || plan
                    .queues
                    .iter()
                    .any(|(v, q)| *v == vhost && q.name == name)
        };
        if source.is_empty() {
            // The default exchange's bindings are implicit.
            continue;
        }
        if !exchange_known(&source) {
            return Err(e.fail(format!("no exchange '{source}' in vhost '{vhost}'")));
        }
        let found = if to_queue {
            queue_known(&destination)
        } else {
            exchange_known(&destination)
        };
        if !found {
            let kind = if to_queue { "queue" } else { "exchange" };
            return Err(e.fail(format!("no {kind} '{destination}' in vhost '{vhost}'")));
        }
        plan.bindings.push(Bind {
            vhost,
            source,
            destination,
            to_queue,
            routing_key: e.text_or("routing_key", "")?,
            arguments: e.arguments()?,
        });
    }
    Ok(plan)
}

fn apply(broker: &Broker, plan: Plan) -> Result<Imported, DefinitionsError> {
    let fail = |what: String| DefinitionsError::Apply(what);
    let mut done = Imported::default();
    for (name, metadata) in plan.vhosts {
        if broker.vhost(&name).is_none() || metadata.is_some() {
            broker
                .put_vhost(&name, metadata.unwrap_or_default())
                .map_err(|e| fail(format!("vhost '{name}': {e}")))?;
        }
        done.vhosts += 1;
    }
    for (name, spec) in plan.users {
        broker
            .access
            .put_user(&name, spec)
            .map_err(|e| fail(format!("user '{name}': {e}")))?;
        done.users += 1;
    }
    for [user, vhost, configure, write, read] in plan.permissions {
        broker
            .access
            .set_permissions(&user, &vhost, &configure, &write, &read)
            .map_err(|e| fail(format!("permissions of '{user}' in '{vhost}': {e}")))?;
        done.permissions += 1;
    }
    for [user, vhost, exchange, write, read] in plan.topic_permissions {
        broker
            .access
            .set_topic_permissions(&user, &vhost, &exchange, &write, &read)
            .map_err(|e| fail(format!("topic permissions of '{user}' in '{vhost}': {e}")))?;
        done.topic_permissions += 1;
    }
    for (vhost, limits) in plan.vhost_limits {
        broker
            .access
            .set_vhost_limits(&vhost, limits)
            .map_err(|e| fail(format!("limits of vhost '{vhost}': {e}")))?;
        done.parameters += 1;
    }
    for (kind, vhost, name, body) in plan.policies {
        broker
            .set_policy(kind, &vhost, &name, &body)
            .map_err(|e| fail(format!("{} '{name}' in '{vhost}': {e}", kind.component())))?;
        match kind {
            PolicyKind::Policy => done.policies += 1,
            PolicyKind::Operator => done.parameters += 1,
        }
    }
    for (vhost, spec) in plan.queues {
        let host = broker
            .vhost(&vhost)
            .ok_or_else(|| fail(format!("vhost '{vhost}' went away")))?;
        if !host.has_queue(&spec.name) {
            let name = spec.name.clone();
            host.declare_queue(spec, 0, &mut NoGuard)
                .map_err(|e| fail(format!("queue '{name}' in '{vhost}': {}", e.reply_text())))?;
        }
        done.queues += 1;
    }
    for (vhost, spec) in plan.exchanges {
        let host = broker
            .vhost(&vhost)
            .ok_or_else(|| fail(format!("vhost '{vhost}' went away")))?;
        if !host.has_exchange(&spec.name) {
            let name = spec.name.clone();
            host.declare_exchange(spec, &mut NoGuard).map_err(|e| {
                fail(format!(
                    "exchange '{name}' in '{vhost}': {}",
                    e.reply_text()
                ))
            })?;
        }
        done.exchanges += 1;
    }
    for b in plan.bindings {
        let host = broker
            .vhost(&b.vhost)
            .ok_or_else(|| fail(format!("vhost '{}' went away", b.vhost)))?;
        let target = match b.to_queue {
            true => BindTarget::Queue(&b.destination),
            false => BindTarget::Exchange(&b.destination),
        };
        host.bind(&b.source, target, &b.routing_key, b.arguments, 0)
            .map_err(|e| {
                fail(format!(
                    "binding from '{}' to '{}' in '{}': {}",
                    b.source,
                    b.destination,
                    b.vhost,
                    e.reply_text()
                ))
            })?;
        done.bindings += 1;
    }
    Ok(done)
}
