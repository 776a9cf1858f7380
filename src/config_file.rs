//! The configuration file (`--config FILE`): TOML with one key per flag plus
//! users, vhosts and permissions, or, for a file ending in `.conf`,
//! RabbitMQ's `rabbitmq.conf` keys that local setups use.
//!
//! This module only reads the file into flag values and definitions; the
//! precedence (flags, then environment, then the file, then defaults) is
//! [`crate::config::Config`]'s.

use std::path::Path;

use serde_json::Value;

/// What a configuration file says.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FileSettings {
    /// Flag (long name) and value, as they would be written on the command line.
    pub flags: Vec<(String, String)>,
    /// Users, vhosts and permissions, as a definitions document.
    pub definitions: Option<Value>,
    /// Settings read but without effect in Warren (said at start).
    pub warnings: Vec<String>,
}

/// Read a configuration file. `flags` are the long names the command line
/// knows; a TOML key must be one of them (in kebab or snake case).
pub fn load(path: &Path, flags: &[String]) -> Result<FileSettings, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the configuration file {}: {e}", path.display()))?;
    let in_file = |why: String| format!("{}: {why}", path.display());
    if path.extension().is_some_and(|e| e == "conf") {
        parse_rabbitmq_conf(&text).map_err(in_file)
    } else {
        parse_toml(&text, flags).map_err(in_file)
    }
}

/// A TOML value as a command-line value (arrays comma-separated).
fn flag_value(value: &toml::Value) -> Result<String, String> {
    Ok(match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(items) => items
            .iter()
            .map(flag_value)
            .collect::<Result<Vec<_>, _>>()?
            .join(","),
        other => return Err(format!("{other} is not a flag value")),
    })
}

fn toml_to_json(value: &toml::Value) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// The TOML format: `listen = "0.0.0.0:5672"`, `data-dir = "/var/lib/warren"`,
/// `[[users]] name, password, tags`, `[[vhosts]] name, description`,
/// `[[permissions]] user, vhost, configure, write, read`.
pub fn parse_toml(text: &str, flags: &[String]) -> Result<FileSettings, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let mut settings = FileSettings::default();
    let mut definitions = serde_json::Map::new();
    for (key, value) in &table {
        match key.as_str() {
            "users" | "vhosts" | "permissions" | "topic_permissions" | "policies" => {
                let toml::Value::Array(items) = value else {
                    return Err(format!("'{key}' must be an array of tables ([[{key}]])"));
                };
                let items: Vec<Value> = items.iter().map(toml_to_json).collect();
                definitions.insert(key.clone(), Value::Array(items));
            }
            "config" => return Err("'config' cannot be set from a configuration file".into()),
            _ => {
                let long = key.replace('_', "-");
                if !flags.contains(&long) {
                    return Err(format!("unknown setting '{key}'"));
                }
                let value = flag_value(value).map_err(|why| format!("'{key}': {why}"))?;
                settings.flags.push((long, value));
            }
        }
    }
    if !definitions.is_empty() {
        settings.definitions = Some(Value::Object(definitions));
    }
    Ok(settings)
}

/// `listeners.tcp.default`: a port, or an address and port.
fn listener(value: &str) -> Result<String, String> {
    if value.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(format!("0.0.0.0:{value}"));
    }
    value
        .parse::<std::net::SocketAddr>()
        .map(|a| a.to_string())
        .map_err(|_| format!("listeners.tcp.default: '{value}' is neither a port nor address:port"))
}

/// RabbitMQ's `rabbitmq.conf`: `key = value` lines, `#` comments.
pub fn parse_rabbitmq_conf(text: &str) -> Result<FileSettings, String> {
    let mut settings = FileSettings::default();
    let mut loopback: Option<Vec<String>> = None;
    // (ip, port) of the management and Prometheus listeners.
    let mut management: (Option<String>, Option<String>) = (None, None);
    let mut prometheus: (Option<String>, Option<String>) = (None, None);
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {}: expected 'key = value'", number + 1));
        };
        let (key, value) = (key.trim(), value.trim());
        let mut flag = |name: &str, value: String| settings.flags.push((name.to_string(), value));
        match key {
            "default_user" => flag("default-user", value.to_string()),
            "default_pass" => flag("default-pass", value.to_string()),
            "default_vhost" => flag("default-vhost", value.to_string()),
            "listeners.tcp.default" | "listeners.tcp.1" => flag("listen", listener(value)?),
            "load_definitions" => flag("definitions", value.to_string()),
            "vm_memory_high_watermark.relative" | "vm_memory_high_watermark.absolute" => {
                flag("memory-high-watermark", value.to_string())
            }
            "disk_free_limit.absolute" => flag("disk-free-limit", value.to_string()),
            "consumer_timeout" => flag("consumer-timeout", value.to_string()),
            "max_message_size" => flag("max-message-size", value.to_string()),
            "heartbeat" => flag("heartbeat", value.to_string()),
            "frame_max" => flag("frame-max", value.to_string()),
            "channel_max" => flag("channel-max", value.to_string()),
            "handshake_timeout" => {
                // RabbitMQ's is in milliseconds; Warren's flag in seconds.
                let ms: u64 = value
                    .parse()
                    .map_err(|_| format!("handshake_timeout: '{value}' is not a number"))?;
                flag("handshake-timeout-secs", ms.div_ceil(1000).to_string())
            }
            "log.console.level" | "log.file.level" => flag("log-level", value.to_string()),
            "management.tcp.ip" => management.0 = Some(value.to_string()),
            "management.tcp.port" => management.1 = Some(value.to_string()),
            "prometheus.tcp.ip" => prometheus.0 = Some(value.to_string()),
            "prometheus.tcp.port" => prometheus.1 = Some(value.to_string()),
            "loopback_users" if value == "none" => loopback = Some(Vec::new()),
            _ if key.starts_with("loopback_users.") => {
                let name = &key["loopback_users.".len()..];
                let list = loopback.get_or_insert_with(|| vec!["guest".to_string()]);
                list.retain(|u| u != name);
                match value {
                    "true" => list.push(name.to_string()),
                    "false" => {}
                    _ => return Err(format!("{key}: expected true or false, not '{value}'")),
                }
            }
            _ => settings.warnings.push(format!(
                "rabbitmq.conf setting '{key}' has no effect in Warren"
            )),
        }
    }
    if let Some(list) = loopback {
        let value = if list.is_empty() {
            "none".to_string()
        } else {
            list.join(",")
        };
        settings.flags.push(("loopback-users".into(), value));
    }
    for (name, (ip, port), default_port) in [
        ("management-listen", management, "15672"),
        ("prometheus-listen", prometheus, "15692"),
    ] {
        if ip.is_none() && port.is_none() {
            continue;
        }
        let ip = ip.unwrap_or_else(|| "0.0.0.0".to_string());
        let port = port.unwrap_or_else(|| default_port.to_string());
        let addr = format!("{ip}:{port}")
            .parse::<std::net::SocketAddr>()
            .map_err(|_| format!("{name}: '{ip}' and '{port}' make no address"))?;
        settings.flags.push((name.into(), addr.to_string()));
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> Vec<String> {
        ["listen", "data-dir", "heartbeat", "loopback-users", "sync"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn toml_keys_become_flags_and_sections_definitions() {
        let settings = parse_toml(
            r#"
listen = "127.0.0.1:5999"
data_dir = "/tmp/w"
heartbeat = 30
sync = false
loopback-users = ["a", "b"]

[[users]]
name = "app"
password = "secret"
tags = ["management"]

[[vhosts]]
name = "orders"

[[permissions]]
user = "app"
vhost = "orders"
configure = ".*"
write = ".*"
read = ".*"
"#,
            &flags(),
        )
        .unwrap();
        assert!(
            settings
                .flags
                .contains(&("data-dir".into(), "/tmp/w".into()))
        );
        assert!(settings.flags.contains(&("heartbeat".into(), "30".into())));
        assert!(
            settings
                .flags
                .contains(&("loopback-users".into(), "a,b".into()))
        );
        assert!(settings.flags.contains(&("sync".into(), "false".into())));
        let defs = settings.definitions.unwrap();
        assert_eq!(defs["users"][0]["name"], "app");
        assert_eq!(defs["permissions"][0]["vhost"], "orders");
        assert_eq!(
            parse_toml("bogus = 1", &flags()).unwrap_err(),
            "unknown setting 'bogus'"
        );
    }

    #[test]
    fn rabbitmq_conf_keys_map_to_flags() {
        let settings = parse_rabbitmq_conf(
            "# local setup\n\
             default_user = app\n\
             default_pass = secret\n\
             default_vhost = orders\n\
             listeners.tcp.default = 5673\n\
             loopback_users.guest = false\n\
             load_definitions = /etc/warren/definitions.json\n\
             vm_memory_high_watermark.relative = 0.6\n\
             disk_free_limit.absolute = 2GB\n\
             consumer_timeout = 3600000\n\
             max_message_size = 1048576\n\
             management.tcp.port = 15673\n\
             prometheus.tcp.ip = 127.0.0.1\n\
             cluster_formation.peer_discovery_backend = classic_config\n",
        )
        .unwrap();
        let get = |name: &str| {
            settings
                .flags
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("default-user"), Some("app"));
        assert_eq!(get("listen"), Some("0.0.0.0:5673"));
        assert_eq!(get("loopback-users"), Some("none"));
        assert_eq!(get("definitions"), Some("/etc/warren/definitions.json"));
        assert_eq!(get("memory-high-watermark"), Some("0.6"));
        assert_eq!(get("disk-free-limit"), Some("2GB"));
        assert_eq!(get("consumer-timeout"), Some("3600000"));
        assert_eq!(get("max-message-size"), Some("1048576"));
        assert_eq!(get("management-listen"), Some("0.0.0.0:15673"));
        assert_eq!(get("prometheus-listen"), Some("127.0.0.1:15692"));
        assert_eq!(settings.warnings.len(), 1);
        let none = parse_rabbitmq_conf("loopback_users = none").unwrap();
        assert_eq!(none.flags, vec![("loopback-users".into(), "none".into())]);
    }
}
