//! What can go wrong with a stream, with the file and position it concerns.
//!
//! Damage is never repaired silently: only a torn tail of the last segment
//! (a chunk that was being written when the process or machine stopped, so
//! never confirmed) is cut at open. Everything else comes back as
//! [`StreamError::Corrupt`] naming the file, the byte position and, when
//! known, the offset.

use std::io;
use std::path::{Path, PathBuf};

use crate::protocol::ReplyCode;

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: damaged at byte {position}{}: {reason}", path.display(), offset_text(*offset))]
    Corrupt {
        path: PathBuf,
        position: u64,
        /// The offset the damaged chunk holds or should hold, when known.
        offset: Option<u64>,
        reason: String,
    },
    #[error("{}: the stream is open elsewhere", path.display())]
    Locked { path: PathBuf },
    #[error("a batch must hold at least one record")]
    EmptyBatch,
    #[error("a record of {0} bytes is larger than a chunk can hold")]
    TooLarge(usize),
    #[error("offsets would pass 2^64")]
    OffsetOverflow,
    /// A flush failed earlier. After a failed fsync the kernel may have
    /// dropped the dirty pages, so nothing appended since the last good flush
    /// can be trusted: the stream refuses further appends and flushes until
    /// it is reopened (which checks the tail again).
    #[error("{}: an earlier flush failed; reopen the stream", path.display())]
    Failed { path: PathBuf },
    #[error("{}: the stream was deleted", path.display())]
    Deleted { path: PathBuf },
}

fn offset_text(offset: Option<u64>) -> String {
    match offset {
        Some(o) => format!(" (offset {o})"),
        None => String::new(),
    }
}

impl StreamError {
    /// The reply code a channel or connection close carries for this error.
    /// Every stream error is the broker's fault, not the client's.
    pub fn reply_code(&self) -> ReplyCode {
        ReplyCode::InternalError
    }

    pub(crate) fn io(path: &Path, source: io::Error) -> StreamError {
        StreamError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn corrupt(
        path: &Path,
        position: u64,
        offset: Option<u64>,
        reason: impl Into<String>,
    ) -> StreamError {
        StreamError::Corrupt {
            path: path.to_path_buf(),
            position,
            offset,
            reason: reason.into(),
        }
    }

    /// True when the error says data on disk is damaged.
    pub fn is_corrupt(&self) -> bool {
        matches!(self, StreamError::Corrupt { .. })
    }
}

impl From<StreamError> for io::Error {
    fn from(e: StreamError) -> io::Error {
        let kind = match &e {
            StreamError::Io { source, .. } => source.kind(),
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

/// Attach a path to an I/O result.
pub(crate) trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T, StreamError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T, StreamError> {
        self.map_err(|e| StreamError::io(path, e))
    }
}
