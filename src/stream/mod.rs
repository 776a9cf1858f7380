//! Stream queues' storage: an append-only log of segment files, as
//! RabbitMQ's osiris and Kafka keep it.
//!
//! This room owns the files of one stream per directory and nothing else:
//! it knows no AMQP method, queue or vhost. The queue side declares a
//! stream, appends batches, flushes them through the group-commit syncer
//! ([`Flushable`]), and reads with one [`Reader`] per consumer.
//!
//! ```text
//! <dir>/00000000000000000000.segment   chunks of records (segment.rs, chunk.rs)
//! <dir>/00000000000000000000.index     one entry per chunk (index.rs)
//! <dir>/00000000000000081920.segment   the next segment, named by its first offset
//! <dir>/lock                           held while the stream is open
//! ```
//!
//! - Offsets are dense, start at 0 and never change; retention deletes
//!   whole segments from the front ([`retention`]), so the first offset only
//!   moves forward.
//! - An append is one chunk: one `write`, one checksum, one index entry.
//!   Readers see a chunk once a flush made it durable.
//! - Open reads the directory listing and the tail of the last segment
//!   only, so it takes the same time for 1 MB as for 10 GB.
//! - Records are opaque bytes; [`message`] encodes AMQP messages as records.
//!
//! Module map:
//! - `log`: [`Stream`]: open and recovery, append, flush, retention, stats.
//! - `chunk`: the chunk format, [`Batch`] (records of one append), [`Chunk`].
//! - `segment`: segment files, tail recovery, index rebuild.
//! - `state`: what the writer and readers share (segment list, committed end, tail).
//! - `index`: index files and their binary searches.
//! - `reader`: [`Reader`] and [`OffsetSpec`] (`x-stream-offset`).
//! - `retention`: which segments `x-max-length-bytes` / `x-max-age` drop.
//! - `filter`: per-chunk Bloom filters (`x-stream-filter`).
//! - `message`: AMQP message ↔ record.

pub mod chunk;
pub mod error;
pub mod filter;
mod index;
mod log;
pub mod message;
pub mod reader;
pub mod retention;
mod segment;
mod state;

pub use chunk::{Batch, Chunk, Records};
pub use error::StreamError;
pub use filter::FilterSpec;
pub use log::{
    Appended, DEFAULT_MAX_SEGMENT_SIZE_BYTES, DEFAULT_TAIL_CACHE_BYTES, Flushable, Stream,
    StreamConfig, StreamStats, now_ms,
};
pub use reader::{OffsetSpec, Reader};
pub use retention::Retention;

#[cfg(test)]
mod tests;
