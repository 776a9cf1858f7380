//! The `warren` command: parse flags, start the broker, stop it on SIGINT or SIGTERM.

use std::io::Write;

use warren::{Config, Server};

/// `warren export-definitions`: write the definitions of a stopped
/// broker's data directory, in RabbitMQ's JSON format.
#[derive(Debug, clap::Parser)]
#[command(
    name = "warren export-definitions",
    about = "Write the definitions (users, vhosts, permissions, policies, queues, exchanges, \
             bindings) kept in a data directory as RabbitMQ's definitions JSON. The broker \
             using the directory must be stopped."
)]
struct ExportDefinitions {
    /// The broker's data directory.
    #[arg(long, env = "WARREN_DATA_DIR", default_value = "./warren-data")]
    data_dir: std::path::PathBuf,
    /// Export only this vhost (RabbitMQ's per-vhost format).
    #[arg(long)]
    vhost: Option<String>,
    /// Where to write; "-" for standard output.
    file: std::path::PathBuf,
}

fn export_definitions(args: impl Iterator<Item = std::ffi::OsString>) -> std::process::ExitCode {
    use clap::Parser;
    let args = ExportDefinitions::try_parse_from(args).unwrap_or_else(|e| e.exit());
    let config = Config {
        data_dir: args.data_dir,
        ..Config::default()
    };
    let failed = |what: String| {
        let _ = writeln!(std::io::stderr(), "warren export-definitions: {what}");
        std::process::ExitCode::FAILURE
    };
    let broker = match warren::broker::Broker::open(config) {
        Ok(broker) => broker,
        Err(e) => return failed(format!("cannot open the data directory: {e}")),
    };
    let definitions = warren::definitions::export(&broker, args.vhost.as_deref());
    broker.store.close();
    let mut text = serde_json::to_string_pretty(&definitions).unwrap_or_default();
    text.push('\n');
    let written = if args.file.as_os_str() == "-" {
        std::io::stdout().write_all(text.as_bytes())
    } else {
        std::fs::write(&args.file, text)
    };
    match written {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => failed(format!("cannot write {}: {e}", args.file.display())),
    }
}

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "export-definitions")
    {
        return export_definitions(std::env::args_os().skip(1));
    }
    let config = Config::from_args_and_env();
    warren::logging::init(config.log_format, &config.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            // Not eprintln!: it panics when standard error cannot be written.
            let _ = writeln!(std::io::stderr(), "warren: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let server = match Server::start(config).await {
            Ok(server) => server,
            Err(e) => {
                tracing::error!("cannot start: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        wait_for_signal().await;
        tracing::info!("shutting down");
        server.shutdown().await;
        std::process::ExitCode::SUCCESS
    })
}

/// glibc gives each thread that allocates while others do an arena of its
/// own, up to eight per core, and memory freed in one arena is not reused
/// by the others: with the runtime's workers, the reaper and the store's
/// threads taking turns on the same messages, RSS grows well past what is
/// in use. Fewer arenas hold less, but past a point the threads queue for
/// them: with a 1M-message persistent backlog on 2 cores, 2 arenas drained
/// ~105k msgs/s and 8 ~150k, at about the same peak RSS once freed memory is
/// returned every second (see `alarm::return_free_memory`).
/// `MALLOC_ARENA_MAX` in the environment still wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; it is called
        // before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 8);
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers, run until killed.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
