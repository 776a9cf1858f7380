//! Broker configuration: command-line flags, each also readable from a
//! `WARREN_…` environment variable, parsed once at start into [`Config`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

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

    /// Directory for durable state (exchanges, queues, bindings, persistent messages).
    #[arg(long, env = "WARREN_DATA_DIR", default_value = "./warren-data")]
    pub data_dir: PathBuf,

    /// Log filter: error, warn, info, debug, trace, or a tracing directive list.
    #[arg(long, env = "WARREN_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Largest message body accepted, in bytes (RabbitMQ's max_message_size;
    /// 128 MiB is the default of RabbitMQ 3.x, which Warren follows).
    #[arg(long, env = "WARREN_MAX_MESSAGE_SIZE", default_value_t = 128 * 1024 * 1024)]
    pub max_message_size: u64,

    /// Heartbeat interval offered to clients, in seconds (0 disables).
    #[arg(long, env = "WARREN_HEARTBEAT", default_value_t = 60)]
    pub heartbeat: u16,

    /// Largest frame offered to clients, in bytes.
    #[arg(long, env = "WARREN_FRAME_MAX", default_value_t = 131_072)]
    pub frame_max: u32,

    /// Most channels open at once per connection (not the highest id: as
    /// in RabbitMQ, any id up to 65535 may be used).
    #[arg(long, env = "WARREN_CHANNEL_MAX", default_value_t = 2047)]
    pub channel_max: u16,

    /// Seconds a client has to complete the AMQP handshake.
    #[arg(long, env = "WARREN_HANDSHAKE_TIMEOUT", default_value_t = 10)]
    pub handshake_timeout_secs: u64,

    /// The user created at first start, with full access to the default vhost.
    #[arg(long, env = "WARREN_DEFAULT_USER", default_value = "guest")]
    pub default_user: String,

    /// Password of the default user.
    #[arg(
        long,
        env = "WARREN_DEFAULT_PASS",
        default_value = "guest",
        hide_env_values = true
    )]
    pub default_pass: String,

    /// Let the default "guest" user connect from other hosts than loopback
    /// (RabbitMQ's loopback_users = none).
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
    #[arg(long, env = "WARREN_MEMORY_HIGH_WATERMARK", default_value = "0.4")]
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
    #[arg(long, env = "WARREN_DISK_FREE_LIMIT", default_value = "50MB")]
    pub disk_free_limit: String,
}

impl Default for Config {
    /// The defaults of every flag, listening on the standard port.
    fn default() -> Self {
        Config::parse_from(["warren"])
    }
}

impl Config {
    /// Defaults, but listening on an ephemeral loopback port with data in
    /// `data_dir`: what embedding applications and tests want.
    pub fn ephemeral(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            ..Config::default()
        }
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }

    /// The memory high watermark in bytes, given the machine's RAM.
    pub fn memory_limit(&self, total_ram: u64) -> Result<u64, String> {
        let text = self.memory_high_watermark.trim();
        match text.parse::<f64>() {
            Ok(f) if (0.0..=1.0).contains(&f) => Ok((total_ram as f64 * f) as u64),
            _ => parse_size(text),
        }
    }

    /// The disk free limit in bytes.
    pub fn disk_limit(&self) -> Result<u64, String> {
        parse_size(self.disk_free_limit.trim())
    }
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
        .map_err(|_| format!("'{text}' is not a size (try 50MB or 2GiB)"))?;
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
        _ => return Err(format!("'{text}' has an unknown unit")),
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
}
