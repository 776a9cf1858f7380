//! Broker configuration: command-line flags, each also readable from a
//! `WARREN_…` environment variable, parsed once at start into [`Config`].
//! The default user, password and vhost also read RabbitMQ's variables
//! (`RABBITMQ_DEFAULT_USER`, …), so a compose file written for RabbitMQ's
//! image works unchanged.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};

/// Everything the broker is told at start.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "warren",
    version,
    about = "An AMQP 0-9-1 broker that speaks RabbitMQ's wire protocol"
)]
pub struct Config {
    /// Address and port to accept AMQP connections on.
    #[arg(long, env = "WARREN_LISTEN", default_value = "0.0.0.0:5672")]
    pub listen: SocketAddr,

    /// Address and port of the management HTTP API and web UI.
    #[arg(
        long,
        env = "WARREN_MANAGEMENT_LISTEN",
        default_value = "0.0.0.0:15672"
    )]
    pub management_listen: SocketAddr,

    /// Do not serve the management HTTP API and web UI.
    #[arg(long, env = "WARREN_NO_MANAGEMENT", default_value_t = false)]
    pub no_management: bool,

    /// Directory for durable state (exchanges, queues, bindings, persistent messages).
    #[arg(long, env = "WARREN_DATA_DIR", default_value = "./warren-data")]
    pub data_dir: PathBuf,

    /// Log filter: error, warn, info, debug, trace, or a tracing directive list.
    #[arg(long, env = "WARREN_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log format: text (coloured only on a terminal) or json (one object per line).
    #[arg(long, env = "WARREN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Largest message body accepted, in bytes (RabbitMQ's max_message_size;
    /// 128 MiB is the default of RabbitMQ 3.x, which Warren follows).
    #[arg(long, env = "WARREN_MAX_MESSAGE_SIZE", default_value_t = 128 * 1024 * 1024)]
    pub max_message_size: u64,

    /// Heartbeat interval offered to clients, in seconds (0 disables).
    #[arg(long, env = "WARREN_HEARTBEAT", default_value_t = 60)]
    pub heartbeat: u16,

    /// Largest frame offered to clients, in bytes (at least 4096, the
    /// protocol's minimum).
    #[arg(long, env = "WARREN_FRAME_MAX", default_value_t = 131_072, value_parser = frame_max_arg)]
    pub frame_max: u32,

    /// Most channels open at once per connection (not the highest id: as
    /// in RabbitMQ, any id up to 65535 may be used).
    #[arg(long, env = "WARREN_CHANNEL_MAX", default_value_t = 2047)]
    pub channel_max: u16,

    /// Seconds a client has to complete the AMQP handshake.
    #[arg(long, env = "WARREN_HANDSHAKE_TIMEOUT", default_value_t = 10)]
    pub handshake_timeout_secs: u64,

    /// The user created at first start (when the store holds no users,
    /// vhosts or permissions), tagged administrator, with full permissions
    /// on the default vhost. Also read from RABBITMQ_DEFAULT_USER.
    #[arg(long, env = "WARREN_DEFAULT_USER", default_value = "guest")]
    pub default_user: String,

    /// Password of the default user. Also read from RABBITMQ_DEFAULT_PASS.
    #[arg(
        long,
        env = "WARREN_DEFAULT_PASS",
        default_value = "guest",
        hide_env_values = true
    )]
    pub default_pass: String,

    /// The vhost created at first start. Also read from RABBITMQ_DEFAULT_VHOST.
    #[arg(long, env = "WARREN_DEFAULT_VHOST", default_value = "/")]
    pub default_vhost: String,

    /// Users who may connect only from loopback addresses (RabbitMQ's
    /// loopback_users), comma-separated; "none" for nobody.
    #[arg(
        long,
        env = "WARREN_LOOPBACK_USERS",
        default_value = "guest",
        value_delimiter = ','
    )]
    pub loopback_users: Vec<String>,

    /// Let "guest" connect from other hosts than loopback (takes it off
    /// --loopback-users).
    #[arg(long, env = "WARREN_ALLOW_REMOTE_GUEST", default_value_t = false)]
    pub allow_remote_guest: bool,

    /// Wait for the disk (fsync) before confirming persistent messages and
    /// answering durable declarations. `--sync false` confirms at once: a
    /// crash may then lose the last confirmed messages.
    #[arg(long, env = "WARREN_SYNC", default_value_t = true, action = clap::ArgAction::Set)]
    pub sync: bool,

    /// Ready messages each queue keeps in memory; beyond this they stay on
    /// disk only and are read back in order as consumers catch up.
    #[arg(long, env = "WARREN_QUEUE_MEMORY_MESSAGES", default_value_t = 8192)]
    pub queue_memory_messages: usize,

    /// Memory the store may use for caching, in MiB. Messages are read back
    /// once, in order, so a larger cache buys little; sled's real use is a
    /// few times this figure.
    #[arg(long, env = "WARREN_STORE_CACHE_MB", default_value_t = 16)]
    pub store_cache_mb: u64,

    /// Memory high watermark: publishers are blocked above it. A number up to
    /// 1 is a fraction of the machine's RAM (0.4 as in RabbitMQ 3.x);
    /// otherwise a size such as 2GB or 512MiB.
    #[arg(long, env = "WARREN_MEMORY_HIGH_WATERMARK", default_value = "0.4", value_parser = watermark_arg)]
    pub memory_high_watermark: String,

    /// Milliseconds a delivery may stay unacknowledged before its channel is
    /// closed with 406 and the message requeued (0 disables; queues may set
    /// their own with `x-consumer-timeout`).
    #[arg(
        long = "consumer-timeout",
        env = "WARREN_CONSUMER_TIMEOUT",
        default_value_t = 1_800_000
    )]
    pub consumer_timeout_ms: u64,

    /// Free disk space below which publishers are blocked, as a size (50MB).
    #[arg(long, env = "WARREN_DISK_FREE_LIMIT", default_value = "50MB", value_parser = size_arg)]
    pub disk_free_limit: String,

    /// A definitions file in RabbitMQ's JSON format (users, vhosts,
    /// permissions, policies, queues, exchanges, bindings), imported at
    /// every start (RabbitMQ's load_definitions). The broker does not start
    /// if the file is invalid.
    #[arg(long, env = "WARREN_DEFINITIONS")]
    pub definitions: Option<PathBuf>,

    /// A configuration file: TOML with any of these flags as keys
    /// (`data-dir = "/var/lib/warren"`) plus `[[users]]`, `[[vhosts]]` and
    /// `[[permissions]]`; or, for a name ending in `.conf`, RabbitMQ's
    /// rabbitmq.conf keys (default_user, listeners.tcp.default,
    /// load_definitions, …). Flags and environment variables win over it.
    #[arg(long, env = "WARREN_CONFIG")]
    pub config: Option<PathBuf>,

    /// Users, vhosts and permissions from the configuration file, as a
    /// definitions document imported at every start.
    #[arg(skip)]
    pub config_definitions: Option<serde_json::Value>,

    /// Settings of the configuration file that have no effect in Warren
    /// (logged at start).
    #[arg(skip)]
    pub config_warnings: Vec<String>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line: timestamp, level, message and fields.
    Json,
}

impl Default for Config {
    /// The defaults of every flag, listening on the standard port.
    fn default() -> Self {
        Config::parse_from(["warren"])
    }
}

/// RabbitMQ's variables for the first-start defaults, by flag.
const RABBITMQ_ALIASES: [(&str, &str); 3] = [
    ("default_user", "RABBITMQ_DEFAULT_USER"),
    ("default_pass", "RABBITMQ_DEFAULT_PASS"),
    ("default_vhost", "RABBITMQ_DEFAULT_VHOST"),
];

impl Config {
    /// The command line and environment of this process, as the `warren`
    /// binary reads them: flags, then `WARREN_…` variables, then RabbitMQ's
    /// `RABBITMQ_DEFAULT_USER`/`_PASS`/`_VHOST`, then defaults. Exits with
    /// the usage on bad flags.
    pub fn from_args_and_env() -> Config {
        Self::from_iter_and_env(std::env::args_os(), |name| std::env::var(name).ok())
            .unwrap_or_else(|e| e.exit())
    }

    /// [`Config::from_args_and_env`] with the arguments and RabbitMQ's
    /// variables given (`WARREN_…` variables are still read from the
    /// process environment).
    pub fn from_iter_and_env<I, T>(
        args: I,
        rabbitmq_env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
        let mut matches = Config::command().try_get_matches_from(args.clone())?;
        let file = match matches.get_one::<PathBuf>("config").cloned() {
            Some(path) => {
                let (with_file, settings) = Self::with_config_file(&path, &args, &matches)?;
                matches = with_file;
                Some(settings)
            }
            None => None,
        };
        let mut config = Config::from_arg_matches(&matches)?;
        if let Some(settings) = file {
            config.config_definitions = settings.definitions;
            config.config_warnings = settings.warnings;
        }
        for (id, variable) in RABBITMQ_ALIASES {
            if matches.value_source(id) != Some(ValueSource::DefaultValue) {
                continue;
            }
            if let Some(value) = rabbitmq_env(variable) {
                match id {
                    "default_user" => config.default_user = value,
                    "default_pass" => config.default_pass = value,
                    _ => config.default_vhost = value,
                }
            }
        }
        Ok(config)
    }

    /// Parse again with the configuration file's values for the flags that
    /// neither the command line nor the environment set.
    fn with_config_file(
        path: &std::path::Path,
        args: &[std::ffi::OsString],
        matches: &clap::ArgMatches,
    ) -> Result<(clap::ArgMatches, crate::config_file::FileSettings), clap::Error> {
        let command = Config::command();
        let longs: Vec<String> = command
            .get_arguments()
            .filter_map(|a| a.get_long().map(str::to_string))
            .collect();
        let settings = crate::config_file::load(path, &longs)
            .map_err(|why| Config::command().error(clap::error::ErrorKind::InvalidValue, why))?;
        let mut injected: Vec<std::ffi::OsString> = args.iter().take(1).cloned().collect();
        for (long, value) in &settings.flags {
            let Some(arg) = command.get_arguments().find(|a| a.get_long() == Some(long)) else {
                continue;
            };
            let source = matches.value_source(arg.get_id().as_str());
            if matches!(
                source,
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            ) {
                continue;
            }
            if arg.get_action().takes_values() {
                injected.push(format!("--{long}={value}").into());
            } else if value == "true" {
                injected.push(format!("--{long}").into());
            }
        }
        injected.extend(args.iter().skip(1).cloned());
        let matches = Config::command().try_get_matches_from(injected)?;
        Ok((matches, settings))
    }

    /// The users allowed to connect only from loopback addresses.
    pub fn loopback_users(&self) -> Vec<String> {
        self.loopback_users
            .iter()
            .map(|u| u.trim())
            .filter(|u| !u.is_empty() && *u != "none")
            .filter(|u| !(self.allow_remote_guest && *u == "guest"))
            .map(str::to_string)
            .collect()
    }

    /// Defaults, but listening on an ephemeral loopback port with data in
    /// `data_dir`: what embedding applications and tests want.
    pub fn ephemeral(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            management_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            ..Config::default()
        }
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }

    /// The memory high watermark in bytes, given the machine's RAM.
    pub fn memory_limit(&self, total_ram: u64) -> Result<u64, ConfigError> {
        watermark(&self.memory_high_watermark, total_ram).map_err(|reason| ConfigError {
            flag: "--memory-high-watermark",
            value: self.memory_high_watermark.clone(),
            reason,
        })
    }

    /// The disk free limit in bytes.
    pub fn disk_limit(&self) -> Result<u64, ConfigError> {
        parse_size(self.disk_free_limit.trim()).map_err(|reason| ConfigError {
            flag: "--disk-free-limit",
            value: self.disk_free_limit.clone(),
            reason,
        })
    }

    /// Refuse settings the broker cannot run with. The command line is
    /// checked as it is parsed; this checks a configuration built in code.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_frame_max(self.frame_max).map_err(|reason| ConfigError {
            flag: "--frame-max",
            value: self.frame_max.to_string(),
            reason,
        })?;
        self.memory_limit(u64::MAX)?;
        self.disk_limit()?;
        Ok(())
    }
}

/// A setting the broker refuses to start with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value '{value}' for '{flag}': {reason}")]
pub struct ConfigError {
    pub flag: &'static str,
    pub value: String,
    pub reason: String,
}

/// A frame size the protocol allows: at least its minimum, 4096 bytes
/// (below that no client can connect).
fn check_frame_max(frame_max: u32) -> Result<(), String> {
    let min = crate::protocol::frame::FRAME_MIN_SIZE;
    if frame_max < min {
        return Err(format!(
            "the frame size must be at least {min} bytes, the AMQP 0-9-1 minimum"
        ));
    }
    Ok(())
}

/// The memory high watermark in bytes: a number up to 1 is a fraction of
/// `total_ram`, anything else a size.
fn watermark(text: &str, total_ram: u64) -> Result<u64, String> {
    let text = text.trim();
    match text.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok((total_ram as f64 * f) as u64),
        _ => parse_size(text).map_err(|_| {
            "not a fraction of RAM (0 to 1, such as 0.4) nor a size (such as 2GB or 512MiB)"
                .to_string()
        }),
    }
}

fn frame_max_arg(text: &str) -> Result<u32, String> {
    let frame_max = text
        .trim()
        .parse::<u32>()
        .map_err(|_| "not a number of bytes".to_string())?;
    check_frame_max(frame_max)?;
    Ok(frame_max)
}

fn watermark_arg(text: &str) -> Result<String, String> {
    watermark(text, u64::MAX)?;
    Ok(text.to_string())
}

fn size_arg(text: &str) -> Result<String, String> {
    parse_size(text.trim())?;
    Ok(text.to_string())
}

/// A size: a number of bytes with an optional unit (kB, MB, GB as powers of
/// 1000; KiB, MiB, GiB as powers of 1024; case-insensitive).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| "not a size (such as 50MB or 2GiB)".to_string())?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1000,
        "kib" => 1 << 10,
        "mb" | "m" => 1000 * 1000,
        "mib" => 1 << 20,
        "gb" | "g" => 1000 * 1000 * 1000,
        "gib" => 1 << 30,
        "tb" | "t" => 1000 * 1000 * 1000 * 1000,
        "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "unknown unit '{}' (kB, MB, GB, KiB, MiB, GiB…)",
                unit.trim()
            ));
        }
    };
    Ok((number * factor as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_watermarks() {
        assert_eq!(parse_size("50MB"), Ok(50_000_000));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert!(parse_size("lots").is_err());
        let config = Config::default();
        assert_eq!(config.memory_limit(1000), Ok(400));
        let fixed = Config {
            memory_high_watermark: "512MiB".into(),
            ..Config::default()
        };
        assert_eq!(fixed.memory_limit(1000), Ok(512 << 20));
    }

    #[test]
    fn rabbitmq_variables_stand_in_for_unset_defaults() {
        let env = |name: &str| match name {
            "RABBITMQ_DEFAULT_USER" => Some("app".to_string()),
            "RABBITMQ_DEFAULT_PASS" => Some("secret".to_string()),
            "RABBITMQ_DEFAULT_VHOST" => Some("orders".to_string()),
            _ => None,
        };
        let config = Config::from_iter_and_env(["warren"], env).unwrap();
        assert_eq!(
            (config.default_user.as_str(), config.default_pass.as_str()),
            ("app", "secret")
        );
        assert_eq!(config.default_vhost, "orders");
        // A flag wins over RabbitMQ's variable.
        let config = Config::from_iter_and_env(["warren", "--default-user", "ops"], env).unwrap();
        assert_eq!(config.default_user, "ops");
        assert_eq!(config.default_vhost, "orders");
        let config = Config::from_iter_and_env(["warren"], |_| None).unwrap();
        assert_eq!(config.default_vhost, "/");
    }

    #[test]
    fn loopback_users() {
        assert_eq!(Config::default().loopback_users(), vec!["guest"]);
        let remote = Config {
            allow_remote_guest: true,
            ..Config::default()
        };
        assert!(remote.loopback_users().is_empty());
        let config =
            Config::from_iter_and_env(["warren", "--loopback-users", "a,b"], |_| None).unwrap();
        assert_eq!(config.loopback_users(), vec!["a", "b"]);
        let none =
            Config::from_iter_and_env(["warren", "--loopback-users", "none"], |_| None).unwrap();
        assert!(none.loopback_users().is_empty());
    }

    #[test]
    fn settings_the_broker_cannot_run_with_are_refused() {
        assert_eq!(Config::default().validate(), Ok(()));
        let small_frames = Config {
            frame_max: 10,
            ..Config::default()
        };
        let error = small_frames.validate().unwrap_err();
        assert_eq!(error.flag, "--frame-max");
        let banana = Config {
            memory_high_watermark: "banana".into(),
            ..Config::default()
        };
        assert_eq!(
            banana.validate().unwrap_err().flag,
            "--memory-high-watermark"
        );
        let no_limit = Config {
            disk_free_limit: "lots".into(),
            ..Config::default()
        };
        assert_eq!(no_limit.validate().unwrap_err().flag, "--disk-free-limit");
        assert!(Config::try_parse_from(["warren", "--frame-max", "4095"]).is_err());
        assert!(Config::try_parse_from(["warren", "--frame-max", "4096"]).is_ok());
        assert!(Config::try_parse_from(["warren", "--memory-high-watermark", "banana"]).is_err());
        assert!(Config::try_parse_from(["warren", "--disk-free-limit", "5 parsecs"]).is_err());
    }
}
