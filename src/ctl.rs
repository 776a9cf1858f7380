//! `warren ctl`: manage a running broker through its management HTTP API.
//!
//! It speaks RabbitMQ's API (the same paths, JSON and error bodies), so it
//! works against Warren and against RabbitMQ with the management plugin.
//! Commands are named after rabbitmqctl's (`list queues` for
//! `list_queues`, `-p` for the vhost, `add-user`, `set-permissions`…);
//! rabbitmqctl's underscore spellings are accepted too.
//!
//! It never touches the broker's state directly, only the API: what works
//! here works from another machine, and what the API refuses (a missing
//! tag, a bad password) is refused here with the API's own reason.

mod api;
mod output;

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};

use api::encode;
pub use api::{Api, CtlError};

/// Where `warren ctl` finds the management API when not told otherwise.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:15672";

/// The API on [`DEFAULT_ADDRESS`] as the broker's default user, read from
/// the variables the broker reads it from: inside a container started with
/// `RABBITMQ_DEFAULT_USER`/`_PASS`, `warren ctl` (and so the image's health
/// check) logs in as the user the broker created.
fn default_url(env: impl Fn(&str) -> Option<String>) -> String {
    let pick = |names: [&str; 2], default: &str| {
        names
            .iter()
            .find_map(|name| env(name).filter(|v| !v.is_empty()))
            .unwrap_or_else(|| default.to_string())
    };
    let user = pick(["WARREN_DEFAULT_USER", "RABBITMQ_DEFAULT_USER"], "guest");
    let password = pick(["WARREN_DEFAULT_PASS", "RABBITMQ_DEFAULT_PASS"], "guest");
    format!(
        "http://{}:{}@{DEFAULT_ADDRESS}",
        encode(&user),
        encode(&password)
    )
}

#[derive(Debug, Parser)]
#[command(
    name = "warren ctl",
    args_override_self = true,
    about = "Manage a running Warren (or RabbitMQ) through its management HTTP API",
    after_help = "Exit codes: 0 done, 64 bad usage, 69 API unreachable, 70 the API refused \
                  the request, 74 file error, 75 await-startup timed out, 77 credentials refused."
)]
pub struct Ctl {
    /// The management API, with credentials: http://user:password@host:port
    /// [default: http://127.0.0.1:15672 as the broker's default user:
    /// WARREN_DEFAULT_USER/_PASS or RABBITMQ_DEFAULT_USER/_PASS when set,
    /// else guest:guest]
    #[arg(long, global = true, env = "WARREN_URL", hide_env_values = true)]
    url: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the broker: product, version, node, listeners, object and message totals, alarms.
    Status {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Wait until the management API answers (for health checks and CI).
    #[command(alias = "await_startup")]
    AwaitStartup {
        /// Give up after this many seconds (exit code 75).
        #[arg(long, short = 't', default_value_t = 300)]
        timeout: u64,
    },
    /// List queues, exchanges, bindings, connections, channels, consumers,
    /// vhosts, users or policies, with the columns given (API field names,
    /// dotted for nested ones: message_stats.publish).
    List(List),
    /// Remove every ready message from a queue.
    #[command(alias = "purge_queue")]
    PurgeQueue {
        #[command(flatten)]
        vhost: VHostArg,
        queue: String,
    },
    /// Delete a queue.
    #[command(alias = "delete_queue")]
    DeleteQueue {
        #[command(flatten)]
        vhost: VHostArg,
        queue: String,
        /// Only if it has no messages.
        #[arg(long, short = 'e')]
        if_empty: bool,
        /// Only if it has no consumers.
        #[arg(long, short = 'u')]
        if_unused: bool,
    },
    /// Close a connection (its name, as `list connections` shows it).
    #[command(alias = "close_connection")]
    CloseConnection {
        connection: String,
        /// The reason the client is told.
        #[arg(default_value = "Closed via management plugin")]
        explanation: String,
    },
    /// Create a user. Without a password, it is read from standard input.
    #[command(alias = "add_user")]
    AddUser {
        username: String,
        password: Option<String>,
        /// Tags, comma-separated (administrator, monitoring, policymaker, management).
        #[arg(long, default_value = "")]
        tags: String,
    },
    /// Delete a user.
    #[command(alias = "delete_user")]
    DeleteUser { username: String },
    /// Change a user's password (its tags stay). Without a password, it is
    /// read from standard input.
    #[command(alias = "change_password")]
    ChangePassword {
        username: String,
        password: Option<String>,
    },
    /// Set a user's tags (none clears them).
    #[command(alias = "set_user_tags")]
    SetUserTags { username: String, tags: Vec<String> },
    /// Grant a user configure, write and read permissions (regular
    /// expressions) in a vhost.
    #[command(alias = "set_permissions")]
    SetPermissions {
        #[command(flatten)]
        vhost: VHostArg,
        username: String,
        configure: String,
        write: String,
        read: String,
    },
    /// Revoke a user's permissions in a vhost.
    #[command(alias = "clear_permissions")]
    ClearPermissions {
        #[command(flatten)]
        vhost: VHostArg,
        username: String,
    },
    /// Create a vhost.
    #[command(alias = "add_vhost")]
    AddVhost {
        vhost: String,
        #[arg(long)]
        description: Option<String>,
        /// Tags, comma-separated.
        #[arg(long)]
        tags: Option<String>,
        /// Type of queues declared without x-queue-type (classic, quorum).
        #[arg(long)]
        default_queue_type: Option<String>,
    },
    /// Delete a vhost and everything in it.
    #[command(alias = "delete_vhost")]
    DeleteVhost { vhost: String },
    /// Set a policy: queues or exchanges whose names match PATTERN get the
    /// keys of DEFINITION (a JSON object) as arguments.
    #[command(alias = "set_policy")]
    SetPolicy {
        #[command(flatten)]
        vhost: VHostArg,
        name: String,
        pattern: String,
        definition: String,
        #[arg(long, default_value_t = 0)]
        priority: i64,
        #[arg(long, value_enum, default_value_t = ApplyTo::All)]
        apply_to: ApplyTo,
    },
    /// Remove a policy.
    #[command(alias = "clear_policy")]
    ClearPolicy {
        #[command(flatten)]
        vhost: VHostArg,
        name: String,
    },
    /// Write the definitions (users, vhosts, permissions, policies,
    /// exchanges, queues, bindings) as JSON to a file, or - for standard output.
    #[command(alias = "export_definitions")]
    ExportDefinitions {
        #[arg(default_value = "-")]
        path: String,
        /// Only this vhost's definitions.
        #[arg(long, short = 'p')]
        vhost: Option<String>,
    },
    /// Load definitions from a JSON file, or - for standard input.
    #[command(alias = "import_definitions")]
    ImportDefinitions {
        #[arg(default_value = "-")]
        path: String,
        /// Into this vhost only (the file holds one vhost's definitions).
        #[arg(long, short = 'p')]
        vhost: Option<String>,
    },
}

#[derive(Debug, Args)]
struct VHostArg {
    /// The virtual host.
    #[arg(long = "vhost", short = 'p', default_value = "/")]
    vhost: String,
}

#[derive(Debug, Args)]
struct List {
    #[arg(value_enum)]
    what: Listable,
    /// Columns to show (API field names); each kind has defaults.
    columns: Vec<String>,
    #[command(flatten)]
    vhost: VHostArg,
    /// Every vhost, not only -p's (queues, exchanges, bindings, consumers, policies).
    #[arg(long)]
    all_vhosts: bool,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ApplyTo {
    All,
    Queues,
    Exchanges,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Listable {
    Queues,
    Exchanges,
    Bindings,
    Connections,
    Channels,
    Consumers,
    Vhosts,
    Users,
    Policies,
    Permissions,
}

impl Listable {
    /// The API collection, and whether it is per vhost.
    fn collection(self) -> (&'static str, bool) {
        match self {
            Listable::Queues => ("queues", true),
            Listable::Exchanges => ("exchanges", true),
            Listable::Bindings => ("bindings", true),
            Listable::Consumers => ("consumers", true),
            Listable::Policies => ("policies", true),
            Listable::Permissions => ("permissions", false),
            Listable::Connections => ("connections", false),
            Listable::Channels => ("channels", false),
            Listable::Vhosts => ("vhosts", false),
            Listable::Users => ("users", false),
        }
    }

    /// The columns shown when none are asked for (rabbitmqctl's, with the
    /// name added where commands need it).
    fn default_columns(self) -> &'static [&'static str] {
        match self {
            Listable::Queues => &["name", "messages", "consumers"],
            Listable::Exchanges => &["name", "type"],
            Listable::Bindings => &[
                "source",
                "destination_type",
                "destination",
                "routing_key",
                "arguments",
            ],
            Listable::Connections => &["name", "user", "vhost", "state"],
            Listable::Channels => &["name", "user", "consumer_count", "messages_unacknowledged"],
            Listable::Consumers => &[
                "queue.name",
                "consumer_tag",
                "ack_required",
                "prefetch_count",
                "channel_details.name",
            ],
            Listable::Vhosts => &["name"],
            Listable::Users => &["name", "tags"],
            Listable::Policies => &[
                "vhost",
                "name",
                "pattern",
                "apply-to",
                "definition",
                "priority",
            ],
            Listable::Permissions => &["user", "vhost", "configure", "write", "read"],
        }
    }
}

/// Run `warren ctl` with `args` (the words after `ctl`).
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let args = std::iter::once("warren ctl".into()).chain(rabbitmqctl_spellings(args));
    let ctl = match Ctl::try_parse_from(args) {
        Ok(ctl) => ctl,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 64 } else { 0 });
        }
    };
    let mut stdout = std::io::stdout().lock();
    match run(ctl, &mut stdout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Not eprintln!: it panics when standard error cannot be written.
            let _ = writeln!(std::io::stderr(), "Error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Run as `rabbitmqctl` or `rabbitmq-diagnostics` (the container image
/// links both names to the binary), so that health checks and scripts
/// written for RabbitMQ's image work unchanged: rabbitmqctl's commands in
/// their underscore spelling, and the diagnostics health checks call
/// (`ping`, `check_running`, `check_port_connectivity`) as `await-startup`
/// with a short timeout. `-q`, `-s` and `-n NODE` are accepted and ignored.
pub fn main_as_rabbitmq_tool(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let mut kept: Vec<std::ffi::OsString> = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("-q" | "--quiet" | "-s" | "--silent") => {}
            Some("-n" | "--node") => {
                args.next();
            }
            Some("ping" | "check_running" | "check_port_connectivity") if kept.is_empty() => {
                kept.extend(["await-startup", "--timeout", "10"].map(Into::into));
            }
            _ => kept.push(arg),
        }
    }
    main(kept)
}

/// rabbitmqctl's `list_queues` is `list queues` here.
fn rabbitmqctl_spellings(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> impl Iterator<Item = std::ffi::OsString> {
    args.into_iter().flat_map(|arg| {
        let split = arg
            .to_str()
            .and_then(|s| s.strip_prefix("list_"))
            .map(|what| vec!["list".into(), what.into()]);
        split.unwrap_or_else(|| vec![arg])
    })
}

fn run(ctl: Ctl, out: &mut dyn Write) -> Result<(), CtlError> {
    let url = ctl
        .url
        .unwrap_or_else(|| default_url(|name| std::env::var(name).ok()));
    let api = Api::new(&url)?;
    match ctl.command {
        Command::Status { format } => status(&api, format, out),
        Command::AwaitStartup { timeout } => await_startup(&api, Duration::from_secs(timeout), out),
        Command::List(list) => list_items(&api, &list, out),
        Command::PurgeQueue { vhost, queue } => {
            api.delete(&format!(
                "queues/{}/{}/contents",
                encode(&vhost.vhost),
                encode(&queue)
            ))?;
            say(
                out,
                &format!("Purged queue '{queue}' in vhost '{}'", vhost.vhost),
            )
        }
        Command::DeleteQueue {
            vhost,
            queue,
            if_empty,
            if_unused,
        } => {
            let mut path = format!("queues/{}/{}", encode(&vhost.vhost), encode(&queue));
            let conditions: Vec<&str> =
                [(if_empty, "if-empty=true"), (if_unused, "if-unused=true")]
                    .into_iter()
                    .filter_map(|(set, query)| set.then_some(query))
                    .collect();
            if !conditions.is_empty() {
                path = format!("{path}?{}", conditions.join("&"));
            }
            api.delete(&path)?;
            say(
                out,
                &format!("Deleted queue '{queue}' in vhost '{}'", vhost.vhost),
            )
        }
        Command::CloseConnection {
            connection,
            explanation,
        } => {
            api.call(
                "DELETE",
                &format!("connections/{}", encode(&connection)),
                None,
                &[("x-reason", &explanation)],
            )?;
            say(out, &format!("Closed connection '{connection}'"))
        }
        Command::AddUser {
            username,
            password,
            tags,
        } => {
            let path = format!("users/{}", encode(&username));
            if api.exists(&path)? {
                return Err(CtlError::Api(format!("user '{username}' already exists")));
            }
            let password = password_or_stdin(password)?;
            api.put(&path, &json!({"password": password, "tags": tags}))?;
            say(out, &format!("Added user '{username}'"))
        }
        Command::DeleteUser { username } => {
            api.delete(&format!("users/{}", encode(&username)))?;
            say(out, &format!("Deleted user '{username}'"))
        }
        Command::ChangePassword { username, password } => {
            let path = format!("users/{}", encode(&username));
            let user = api.get(&path)?;
            let tags = output::cell(user.get("tags"));
            let password = password_or_stdin(password)?;
            api.put(&path, &json!({"password": password, "tags": tags}))?;
            say(out, &format!("Changed the password of user '{username}'"))
        }
        Command::SetUserTags { username, tags } => {
            let path = format!("users/{}", encode(&username));
            let mut user = api.get(&path)?;
            // Keep the password: send its hash back.
            let body = json!({
                "password_hash": user.get_mut("password_hash").map(Value::take).unwrap_or_default(),
                "hashing_algorithm": user.get_mut("hashing_algorithm").map(Value::take).unwrap_or_default(),
                "tags": tags.join(","),
            });
            api.put(&path, &body)?;
            say(
                out,
                &format!("Set the tags of user '{username}' to [{}]", tags.join(", ")),
            )
        }
        Command::SetPermissions {
            vhost,
            username,
            configure,
            write,
            read,
        } => {
            api.put(
                &format!("permissions/{}/{}", encode(&vhost.vhost), encode(&username)),
                &json!({"configure": configure, "write": write, "read": read}),
            )?;
            say(
                out,
                &format!(
                    "Set permissions for user '{username}' in vhost '{}'",
                    vhost.vhost
                ),
            )
        }
        Command::ClearPermissions { vhost, username } => {
            api.delete(&format!(
                "permissions/{}/{}",
                encode(&vhost.vhost),
                encode(&username)
            ))?;
            say(
                out,
                &format!(
                    "Cleared permissions for user '{username}' in vhost '{}'",
                    vhost.vhost
                ),
            )
        }
        Command::AddVhost {
            vhost,
            description,
            tags,
            default_queue_type,
        } => {
            let path = format!("vhosts/{}", encode(&vhost));
            if api.exists(&path)? {
                return Err(CtlError::Api(format!("vhost '{vhost}' already exists")));
            }
            let mut body = serde_json::Map::new();
            for (key, value) in [
                ("description", description),
                ("tags", tags),
                ("default_queue_type", default_queue_type),
            ] {
                if let Some(value) = value {
                    body.insert(key.into(), Value::String(value));
                }
            }
            api.put(&path, &Value::Object(body))?;
            say(out, &format!("Added vhost '{vhost}'"))
        }
        Command::DeleteVhost { vhost } => {
            api.delete(&format!("vhosts/{}", encode(&vhost)))?;
            say(out, &format!("Deleted vhost '{vhost}'"))
        }
        Command::SetPolicy {
            vhost,
            name,
            pattern,
            definition,
            priority,
            apply_to,
        } => {
            let definition: Value = serde_json::from_str(&definition).map_err(|e| {
                CtlError::Usage(format!("the definition is not a JSON object: {e}"))
            })?;
            if !definition.is_object() {
                return Err(CtlError::Usage(
                    "the definition is not a JSON object".into(),
                ));
            }
            let apply_to = match apply_to {
                ApplyTo::All => "all",
                ApplyTo::Queues => "queues",
                ApplyTo::Exchanges => "exchanges",
            };
            api.put(
                &format!("policies/{}/{}", encode(&vhost.vhost), encode(&name)),
                &json!({
                    "pattern": pattern,
                    "definition": definition,
                    "priority": priority,
                    "apply-to": apply_to,
                }),
            )?;
            say(
                out,
                &format!("Set policy '{name}' in vhost '{}'", vhost.vhost),
            )
        }
        Command::ClearPolicy { vhost, name } => {
            api.delete(&format!(
                "policies/{}/{}",
                encode(&vhost.vhost),
                encode(&name)
            ))?;
            say(
                out,
                &format!("Cleared policy '{name}' in vhost '{}'", vhost.vhost),
            )
        }
        Command::ExportDefinitions { path, vhost } => {
            let url = match &vhost {
                Some(vhost) => format!("definitions/{}", encode(vhost)),
                None => "definitions".to_string(),
            };
            let definitions = api.get(&url)?;
            let mut text = serde_json::to_string_pretty(&definitions).unwrap_or_default();
            text.push('\n');
            if path == "-" {
                return write_out(out, &text);
            }
            std::fs::write(&path, text).map_err(|error| CtlError::File {
                path: path.clone(),
                error,
            })?;
            let _ = writeln!(std::io::stderr(), "Exported definitions to {path}");
            Ok(())
        }
        Command::ImportDefinitions { path, vhost } => {
            let text = if path == "-" {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .map_err(|error| CtlError::File {
                        path: "standard input".into(),
                        error,
                    })?;
                text
            } else {
                std::fs::read_to_string(&path).map_err(|error| CtlError::File {
                    path: path.clone(),
                    error,
                })?
            };
            let definitions: Value = serde_json::from_str(&text)
                .map_err(|e| CtlError::Usage(format!("{path} is not JSON: {e}")))?;
            let url = match &vhost {
                Some(vhost) => format!("definitions/{}", encode(vhost)),
                None => "definitions".to_string(),
            };
            api.post(&url, &definitions)?;
            say(out, &format!("Imported definitions from {path}"))
        }
    }
}

/// A confirmation line, on standard output like rabbitmqctl's.
fn say(out: &mut dyn Write, line: &str) -> Result<(), CtlError> {
    write_out(out, &format!("{line}\n"))
}

fn write_out(out: &mut dyn Write, text: &str) -> Result<(), CtlError> {
    // A closed pipe (`| head`) is not an error of the command.
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    Ok(())
}

/// The password given, or the first line of standard input (so it stays
/// out of the process list and shell history).
fn password_or_stdin(password: Option<String>) -> Result<String, CtlError> {
    if let Some(password) = password {
        return Ok(password);
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|error| CtlError::File {
            path: "standard input".into(),
            error,
        })?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        return Err(CtlError::Usage(
            "no password given (as an argument or on standard input)".into(),
        ));
    }
    Ok(password)
}

fn list_items(api: &Api, list: &List, out: &mut dyn Write) -> Result<(), CtlError> {
    let (collection, per_vhost) = list.what.collection();
    let columns: Vec<String> = if list.columns.is_empty() {
        let defaults = list.what.default_columns();
        let mut columns: Vec<String> = defaults.iter().map(|c| c.to_string()).collect();
        if list.all_vhosts && per_vhost && !defaults.contains(&"vhost") {
            columns.insert(0, "vhost".into());
        }
        columns
    } else {
        list.columns.clone()
    };
    let mut path = if per_vhost && !list.all_vhosts {
        format!("{collection}/{}", encode(&list.vhost.vhost))
    } else {
        collection.to_string()
    };
    // Only the columns shown: with thousands of queues, the API sends a
    // fraction of each object (RabbitMQ's `columns` parameter).
    let wanted: Vec<String> = columns.iter().map(|c| encode(c)).collect();
    path = format!("{path}?columns={}", wanted.join(","));
    let items = match api.get(&path)? {
        Value::Array(items) => items,
        // Paged answers (`?page=`) carry their items.
        Value::Object(mut paged) => match paged.remove("items") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    let text = match list.format {
        Format::Table => output::table(&items, &columns),
        Format::Json => output::json(&items, &columns),
    };
    write_out(out, &text)
}

fn status(api: &Api, format: Format, out: &mut dyn Write) -> Result<(), CtlError> {
    let overview = api.get("overview")?;
    let alarms = api.request("GET", "health/checks/alarms", None, &[])?;
    let alarms = match alarms.status {
        200 => Vec::new(),
        503 => alarms
            .json()
            .ok()
            .and_then(|v| v.get("alarms").cloned())
            .and_then(|a| a.as_array().cloned())
            .unwrap_or_default(),
        _ => return Err(api::error_of(&alarms)),
    };
    if format == Format::Json {
        let mut overview = overview;
        if let Some(object) = overview.as_object_mut() {
            object.insert("alarms".into(), Value::Array(alarms));
        }
        let mut text = serde_json::to_string_pretty(&overview).unwrap_or_default();
        text.push('\n');
        return write_out(out, &text);
    }
    let field = |path: &str| output::cell(output::lookup(&overview, path));
    let mut text = String::new();
    text.push_str(&format!("Status of node {}\n", field("node")));
    let product = format!("{} {}", field("product_name"), field("product_version"));
    let rabbitmq = format!("RabbitMQ {}", field("rabbitmq_version"));
    match product == rabbitmq {
        true => text.push_str(&format!("Product: {product}\n")),
        false => text.push_str(&format!(
            "Product: {product} (compatible with {rabbitmq})\n"
        )),
    }
    text.push_str(&format!("Cluster name: {}\n", field("cluster_name")));
    let listeners: Vec<String> = overview
        .get("listeners")
        .and_then(Value::as_array)
        .map(|listeners| {
            listeners
                .iter()
                .map(|l| {
                    format!(
                        "{} on {}:{}",
                        output::cell(l.get("protocol")),
                        output::cell(l.get("ip_address")),
                        output::cell(l.get("port"))
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    text.push_str(&format!("Listeners: {}\n", listeners.join(", ")));
    text.push_str(&format!(
        "Totals: {} connections, {} channels, {} exchanges, {} queues, {} consumers\n",
        field("object_totals.connections"),
        field("object_totals.channels"),
        field("object_totals.exchanges"),
        field("object_totals.queues"),
        field("object_totals.consumers"),
    ));
    let count = |path: &str| match output::lookup(&overview, path) {
        Some(v) if !v.is_null() => output::cell(Some(v)),
        _ => "0".to_string(),
    };
    text.push_str(&format!(
        "Messages: {} ready, {} unacknowledged, {} total\n",
        count("queue_totals.messages_ready"),
        count("queue_totals.messages_unacknowledged"),
        count("queue_totals.messages"),
    ));
    if alarms.is_empty() {
        text.push_str("Alarms: none\n");
    } else {
        let alarms: Vec<String> = alarms
            .iter()
            .map(|a| output::cell(a.get("resource")))
            .collect();
        text.push_str(&format!("Alarms: {}\n", alarms.join(", ")));
    }
    write_out(out, &text)
}

/// Poll the API until it answers `overview` (or `timeout` passes). Bad
/// credentials fail at once: waiting would not fix them.
fn await_startup(api: &Api, timeout: Duration, out: &mut dyn Write) -> Result<(), CtlError> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match api.request("GET", "overview", None, &[]) {
            Ok(answer) if answer.status == 200 => {
                return say(out, &format!("The broker at {} is up", api.base()));
            }
            Ok(answer) if answer.status == 401 => return Err(api::error_of(&answer)),
            Ok(answer) => api::error_of(&answer).to_string(),
            Err(e) => e.to_string(),
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(CtlError::Timeout(format!(
                "the broker at {} did not start within {} s ({last})",
                api.base(),
                timeout.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(250).min(deadline - now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Ctl, clap::Error> {
        let args = args.iter().map(std::ffi::OsString::from);
        Ctl::try_parse_from(std::iter::once("warren ctl".into()).chain(rabbitmqctl_spellings(args)))
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Ctl::command().debug_assert();
    }

    #[test]
    fn rabbitmqctl_spellings_are_understood() {
        let ctl = parse(&["list_queues", "-p", "orders", "name", "messages"]).unwrap();
        let Command::List(list) = ctl.command else {
            panic!("a list");
        };
        assert_eq!(list.what, Listable::Queues);
        assert_eq!(list.vhost.vhost, "orders");
        assert_eq!(list.columns, ["name", "messages"]);
        // A repeated option (rabbitmq-diagnostics' own -t after ping's): the last wins.
        let Command::AwaitStartup { timeout } =
            parse(&["await-startup", "-t", "10", "--timeout", "2"])
                .unwrap()
                .command
        else {
            panic!("await-startup");
        };
        assert_eq!(timeout, 2);
        assert!(matches!(
            parse(&["purge_queue", "q"]).unwrap().command,
            Command::PurgeQueue { .. }
        ));
        assert!(matches!(
            parse(&["set_permissions", "-p", "v", "u", ".*", ".*", ".*"])
                .unwrap()
                .command,
            Command::SetPermissions { .. }
        ));
    }

    #[test]
    fn the_default_url_logs_in_as_the_brokers_default_user() {
        assert_eq!(default_url(|_| None), "http://guest:guest@127.0.0.1:15672");
        let env = |name: &str| match name {
            "RABBITMQ_DEFAULT_USER" => Some("app".to_string()),
            "RABBITMQ_DEFAULT_PASS" => Some("p@ss".to_string()),
            "WARREN_DEFAULT_USER" => Some("ops".to_string()),
            _ => None,
        };
        assert_eq!(default_url(env), "http://ops:p%40ss@127.0.0.1:15672");
    }

    #[test]
    fn the_vhost_defaults_to_slash() {
        let Command::DeleteQueue { vhost, .. } = parse(&["delete-queue", "q"]).unwrap().command
        else {
            panic!("delete-queue");
        };
        assert_eq!(vhost.vhost, "/");
    }
}
