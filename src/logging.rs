//! Log output: human-readable text, coloured only on a terminal, or one
//! JSON object per line (`--log-format json`), on standard output.
//!
//! Logging never takes the broker down: a line that cannot be written (a
//! full disk, a closed pipe, `/dev/full`) is dropped, and the subscriber
//! is told not to report its own write errors (it would report them on
//! standard error, which may be just as unwritable, and printing to an
//! unwritable stderr panics).

use std::io::{self, IsTerminal, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

/// Install the process's log subscriber: `filter` is a tracing directive
/// list (an invalid one means "info"). Does nothing if one is installed.
pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(Stdout)
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(colour_on_stdout()).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}

/// Colour codes only for a person at a terminal, and not when `NO_COLOR`
/// asks for none.
fn colour_on_stdout() -> bool {
    let no_colour = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    io::stdout().is_terminal() && !no_colour
}

/// Standard output, through [`DropOnError`].
struct Stdout;

impl<'a> MakeWriter<'a> for Stdout {
    type Writer = DropOnError<io::StdoutLock<'a>>;

    fn make_writer(&'a self) -> Self::Writer {
        DropOnError(io::stdout().lock())
    }
}

/// A writer that drops what its inner writer cannot take, and always
/// reports success.
pub struct DropOnError<W>(pub W);

impl<W: Write> Write for DropOnError<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = self.0.write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = self.0.flush();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        }
    }

    #[test]
    fn a_line_that_cannot_be_written_is_dropped_without_an_error() {
        let mut out = DropOnError(Full);
        assert_eq!(out.write(b"a log line\n").unwrap(), 11);
        assert!(out.flush().is_ok());
        assert!(writeln!(out, "another").is_ok());
    }
}
