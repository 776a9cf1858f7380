//! Retention: which of the oldest segments to delete.
//!
//! As RabbitMQ (osiris) does it: whole segments only, never the one being
//! written; by size, the oldest go while the stream is larger than
//! `max_length_bytes`; by age, the oldest go while their last chunk is older
//! than `max_age`. Retention runs when a segment is sealed and whenever the
//! owner calls [`Stream::apply_retention`](super::Stream::apply_retention)
//! (for example on a timer, so an idle stream still ages out).

use std::time::Duration;

use super::error::StreamError;

/// `x-max-length-bytes` and `x-max-age`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub max_length_bytes: Option<u64>,
    pub max_age: Option<Duration>,
}

impl Retention {
    pub fn is_none(&self) -> bool {
        self.max_length_bytes.is_none() && self.max_age.is_none()
    }
}

/// How many of the oldest segments to delete, given each segment's size,
/// of which only the first `deletable` may go. `last_timestamp(i)` gives the
/// timestamp of segment `i`'s last chunk (read lazily: only the oldest
/// segments are ever asked).
pub(crate) fn segments_to_delete(
    retention: &Retention,
    sizes: &[u64],
    deletable: usize,
    now_ms: i64,
    mut last_timestamp: impl FnMut(usize) -> Result<Option<i64>, StreamError>,
) -> Result<usize, StreamError> {
    let deletable = deletable.min(sizes.len().saturating_sub(1));
    let mut n = 0;
    if let Some(max) = retention.max_length_bytes {
        let mut total: u64 = sizes.iter().sum();
        while n < deletable && total > max {
            total -= sizes[n];
            n += 1;
        }
    }
    if let Some(age) = retention.max_age {
        let age_ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now_ms.saturating_sub(age_ms);
        while n < deletable {
            match last_timestamp(n)? {
                Some(ts) if ts < cutoff => n += 1,
                _ => break,
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(retention: Retention, sizes: &[u64], deletable: usize, stamps: &[i64]) -> usize {
        segments_to_delete(&retention, sizes, deletable, 1_000, |i| {
            Ok(stamps.get(i).copied())
        })
        .unwrap()
    }

    #[test]
    fn size_deletes_the_oldest_while_over_the_limit() {
        let by_size = Retention {
            max_length_bytes: Some(250),
            max_age: None,
        };
        assert_eq!(run(by_size, &[100, 100, 100, 100], 3, &[]), 2);
        assert_eq!(run(by_size, &[100, 100], 1, &[]), 0);
        // The active segment stays even when it alone is over the limit.
        let tiny = Retention {
            max_length_bytes: Some(1),
            max_age: None,
        };
        assert_eq!(run(tiny, &[100, 100, 100], 2, &[]), 2);
        assert_eq!(run(tiny, &[100, 100, 100], 9, &[]), 2);
    }

    #[test]
    fn age_deletes_segments_whose_last_chunk_is_old() {
        let by_age = Retention {
            max_length_bytes: None,
            max_age: Some(Duration::from_millis(500)),
        };
        // now = 1000, cutoff = 500.
        assert_eq!(run(by_age, &[1, 1, 1, 1], 3, &[100, 499, 500, 900]), 2);
        assert_eq!(run(by_age, &[1, 1], 1, &[100, 200]), 1);
        assert_eq!(run(Retention::default(), &[1, 1], 1, &[0, 0]), 0);
    }
}
