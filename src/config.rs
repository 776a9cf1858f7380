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

    /// Largest message body accepted, in bytes (RabbitMQ's max_message_size).
    #[arg(long, env = "WARREN_MAX_MESSAGE_SIZE", default_value_t = 16 * 1024 * 1024)]
    pub max_message_size: u64,

    /// Heartbeat interval offered to clients, in seconds (0 disables).
    #[arg(long, env = "WARREN_HEARTBEAT", default_value_t = 60)]
    pub heartbeat: u16,

    /// Largest frame offered to clients, in bytes.
    #[arg(long, env = "WARREN_FRAME_MAX", default_value_t = 131_072)]
    pub frame_max: u32,

    /// Most channels per connection.
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
}
