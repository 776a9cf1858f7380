//! The log's behaviour, file by file on a real directory.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;

use super::*;

static DIRS: AtomicUsize = AtomicUsize::new(0);

/// A directory removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let n = DIRS.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("warren-stream-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config() -> StreamConfig {
    StreamConfig {
        // Fast tests: the durability order is the same, the disk wait is not.
        sync: false,
        ..StreamConfig::default()
    }
}

fn small_segments(max: u64) -> StreamConfig {
    StreamConfig {
        max_segment_size_bytes: max,
        ..config()
    }
}

fn record(offset: u64) -> Vec<u8> {
    format!("record-{offset}").into_bytes()
}

/// Append `count` records as one chunk, each saying its own offset.
fn append(stream: &Stream, count: u64) -> Appended {
    append_at(stream, count, now_ms())
}

fn append_at(stream: &Stream, count: u64, timestamp: i64) -> Appended {
    let first = stream.next_offset();
    let mut batch = Batch::new();
    for o in first..first + count {
        batch.push(&record(o)).unwrap();
    }
    stream.append_at(batch, timestamp).unwrap()
}

/// Read until caught up; (offset, record) pairs.
fn read_all(reader: &mut Reader) -> Result<Vec<(u64, Bytes)>, StreamError> {
    let mut out = Vec::new();
    for _ in 0..100_000 {
        match reader.read()? {
            Some(chunk) => out.extend(chunk.records()),
            None => return Ok(out),
        }
    }
    panic!("reader never caught up");
}

fn offsets(records: &[(u64, Bytes)]) -> Vec<u64> {
    records.iter().map(|(o, _)| *o).collect()
}

fn check_records(records: &[(u64, Bytes)]) {
    for (o, r) in records {
        assert_eq!(&r[..], &record(*o)[..], "offset {o}");
    }
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    out.sort();
    out
}

fn flip_byte(path: &Path, position: u64) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, position).unwrap();
    b[0] ^= 0x40;
    file.write_all_at(&b, position).unwrap();
}

fn truncate(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

#[test]
fn an_empty_stream_has_nothing_to_read() {
    let dir = TempDir::new("empty");
    let stream = Stream::open(&dir.0, config()).unwrap();
    assert_eq!((stream.first_offset(), stream.committed_offset()), (0, 0));
    for spec in [
        OffsetSpec::First,
        OffsetSpec::Last,
        OffsetSpec::Next,
        OffsetSpec::Offset(5),
        OffsetSpec::Timestamp(0),
    ] {
        let mut reader = stream.reader(spec).unwrap();
        assert!(!reader.has_more());
        assert!(reader.read().unwrap().is_none(), "{spec:?}");
        assert_eq!(reader.next_offset(), 0);
    }
    assert!(matches!(
        stream.append(Batch::new()),
        Err(StreamError::EmptyBatch)
    ));
    assert_eq!(stream.flush().unwrap(), 0);
}

#[test]
fn records_are_visible_after_the_flush_that_makes_them_durable() {
    let dir = TempDir::new("flush");
    let stream = Stream::open(&dir.0, config()).unwrap();
    let a = append(&stream, 3);
    let b = append(&stream, 2);
    assert_eq!(
        (a.first_offset, a.next_offset, b.first_offset, b.next_offset),
        (0, 3, 3, 5)
    );
    let mut reader = stream.reader(OffsetSpec::First).unwrap();
    assert!(reader.read().unwrap().is_none());
    assert!(Flushable::needs_flush(&stream));
    assert_eq!(stream.flush_to(a.next_offset).unwrap(), 5);
    assert_eq!(stream.flush_to(b.next_offset).unwrap(), 5);
    assert!(!Flushable::needs_flush(&stream));
    assert!(reader.has_more());
    let records = read_all(&mut reader).unwrap();
    assert_eq!(offsets(&records), vec![0, 1, 2, 3, 4]);
    check_records(&records);
    assert!(!reader.has_more());
}

#[test]
fn last_starts_at_the_last_chunk_and_next_after_it() {
    let dir = TempDir::new("last");
    let stream = Stream::open(&dir.0, config()).unwrap();
    append(&stream, 3);
    append(&stream, 4);
    stream.flush().unwrap();
    let mut last = stream.reader(OffsetSpec::Last).unwrap();
    let mut next = stream.reader(OffsetSpec::Next).unwrap();
    assert_eq!(offsets(&read_all(&mut last).unwrap()), vec![3, 4, 5, 6]);
    assert!(read_all(&mut next).unwrap().is_empty());
    append(&stream, 2);
    stream.flush().unwrap();
    assert_eq!(offsets(&read_all(&mut next).unwrap()), vec![7, 8]);
    assert_eq!(offsets(&read_all(&mut last).unwrap()), vec![7, 8]);
}

#[test]
fn an_offset_inside_a_chunk_skips_the_records_before_it() {
    let dir = TempDir::new("offset");
    let stream = Stream::open(&dir.0, small_segments(300)).unwrap();
    for _ in 0..20 {
        append(&stream, 4);
    }
    stream.flush().unwrap();
    assert!(files(&dir.0, "segment").len() > 3);
    for start in [0, 1, 5, 38, 41, 79] {
        let mut reader = stream.reader(OffsetSpec::Offset(start)).unwrap();
        let records = read_all(&mut reader).unwrap();
        assert_eq!(
            offsets(&records),
            (start..80).collect::<Vec<_>>(),
            "from {start}"
        );
        check_records(&records);
    }
    let mut past = stream.reader(OffsetSpec::Offset(80)).unwrap();
    assert!(read_all(&mut past).unwrap().is_empty());
    append(&stream, 1);
    stream.flush().unwrap();
    assert_eq!(offsets(&read_all(&mut past).unwrap()), vec![80]);
}

#[test]
fn a_timestamp_finds_the_first_chunk_at_or_after_it() {
    let dir = TempDir::new("timestamp");
    let stream = Stream::open(&dir.0, small_segments(200)).unwrap();
    for i in 0..30 {
        append_at(&stream, 2, 1_000 + i * 100);
    }
    stream.flush().unwrap();
    assert!(files(&dir.0, "segment").len() > 3);
    let first_from = |ts: i64| {
        let mut reader = stream.reader(OffsetSpec::Timestamp(ts)).unwrap();
        read_all(&mut reader).unwrap().first().map(|(o, _)| *o)
    };
    assert_eq!(first_from(0), Some(0));
    assert_eq!(first_from(1_000), Some(0));
    assert_eq!(first_from(1_001), Some(2));
    assert_eq!(first_from(1_500), Some(10));
    assert_eq!(first_from(3_900), Some(58));
    assert_eq!(first_from(3_901), None);
    assert_eq!(first_from(i64::MIN), Some(0));
    assert_eq!(first_from(i64::MAX), None);
    // A clock that goes back does not break the order.
    let back = append_at(&stream, 1, 5);
    assert_eq!(back.timestamp, 3_900);
}

#[test]
fn segments_roll_over_at_the_size_limit() {
    let dir = TempDir::new("roll");
    let stream = Stream::open(&dir.0, small_segments(1_000)).unwrap();
    let mut appended = Vec::new();
    for _ in 0..40 {
        appended.push(append(&stream, 5));
    }
    stream.flush().unwrap();
    let segments = files(&dir.0, "segment");
    assert_eq!(segments.len(), files(&dir.0, "index").len());
    assert!(segments.len() >= 5, "{}", segments.len());
    for path in &segments {
        assert!(
            std::fs::metadata(path).unwrap().len() <= 1_000,
            "{}",
            path.display()
        );
    }
    // Each segment is named by the offset its first chunk holds.
    let bases: Vec<u64> = appended
        .iter()
        .filter(|a| a.position == segment::HEADER_LEN)
        .map(|a| a.first_offset)
        .collect();
    let names: Vec<u64> = segments
        .iter()
        .map(|p| {
            segment::parse_name(p.file_name().unwrap().to_str().unwrap())
                .unwrap()
                .0
        })
        .collect();
    assert_eq!(bases, names);
    let records = read_all(&mut stream.reader(OffsetSpec::First).unwrap()).unwrap();
    assert_eq!(offsets(&records), (0..200).collect::<Vec<_>>());
    check_records(&records);
    assert_eq!(stream.stats().segments, segments.len());
}

#[test]
fn a_chunk_larger_than_a_segment_gets_a_segment_of_its_own() {
    let dir = TempDir::new("big-chunk");
    let stream = Stream::open(&dir.0, small_segments(100)).unwrap();
    append(&stream, 1);
    let mut batch = Batch::new();
    batch.push(&vec![7u8; 5_000]).unwrap();
    let big = stream.append(batch).unwrap();
    append(&stream, 1);
    stream.flush().unwrap();
    assert_eq!(big.position, segment::HEADER_LEN);
    assert_eq!(files(&dir.0, "segment").len(), 3);
    let records = read_all(&mut stream.reader(OffsetSpec::First).unwrap()).unwrap();
    assert_eq!(offsets(&records), vec![0, 1, 2]);
    assert_eq!(records[1].1.len(), 5_000);
}

#[test]
fn retention_by_size_deletes_the_oldest_segments() {
    let dir = TempDir::new("max-bytes");
    let mut config = small_segments(500);
    config.retention.max_length_bytes = Some(2_000);
    let stream = Stream::open(&dir.0, config).unwrap();
    let mut reader = stream.reader(OffsetSpec::First).unwrap();
    for _ in 0..100 {
        append(&stream, 3);
    }
    stream.flush().unwrap();
    let stats = stream.stats();
    assert!(stats.first_offset > 0);
    assert!(stats.bytes <= 2_000 + 500, "{stats:?}");
    assert_eq!(stats.committed_offset, 300);
    // Segments are whole: the first offset is a segment's first.
    assert!(
        dir.0
            .join(format!("{:020}.segment", stats.first_offset))
            .exists()
    );
    assert_eq!(files(&dir.0, "segment").len(), stats.segments);
    // A reader behind retention, or asking for an offset before the first,
    // starts at the first.
    let records = read_all(&mut reader).unwrap();
    assert_eq!(records[0].0, stats.first_offset);
    assert_eq!(
        offsets(&records),
        (stats.first_offset..300).collect::<Vec<_>>()
    );
    let mut early = stream.reader(OffsetSpec::Offset(0)).unwrap();
    assert_eq!(read_all(&mut early).unwrap()[0].0, stats.first_offset);
}

#[test]
fn retention_by_age_deletes_segments_whose_last_chunk_is_old() {
    let dir = TempDir::new("max-age");
    let stream = Stream::open(&dir.0, small_segments(400)).unwrap();
    let old = now_ms() - 3_600_000;
    for i in 0..30 {
        append_at(&stream, 2, old + i);
    }
    let fresh = append(&stream, 2);
    for _ in 0..10 {
        append(&stream, 2);
    }
    stream.flush().unwrap();
    assert_eq!(stream.first_offset(), 0);
    let removed = stream
        .set_retention(Retention {
            max_length_bytes: None,
            max_age: Some(Duration::from_secs(600)),
        })
        .unwrap();
    assert!(removed > 0);
    let first = stream.first_offset();
    assert!(
        first > 0 && first <= fresh.first_offset,
        "first {first}, fresh {}",
        fresh.first_offset
    );
    let records = read_all(&mut stream.reader(OffsetSpec::First).unwrap()).unwrap();
    assert_eq!(offsets(&records), (first..82).collect::<Vec<_>>());
    // The retention holds after a reopen.
    drop(stream);
    let stream = Stream::open(&dir.0, small_segments(400)).unwrap();
    assert_eq!(stream.first_offset(), first);
}

#[test]
fn a_reopened_stream_keeps_its_records_and_offsets() {
    let dir = TempDir::new("reopen");
    {
        let stream = Stream::open(&dir.0, small_segments(600)).unwrap();
        for _ in 0..30 {
            append(&stream, 3);
        }
        stream.flush().unwrap();
    }
    let stream = Stream::open(&dir.0, small_segments(600)).unwrap();
    assert_eq!((stream.first_offset(), stream.committed_offset()), (0, 90));
    let mut last = stream.reader(OffsetSpec::Last).unwrap();
    assert_eq!(offsets(&read_all(&mut last).unwrap()), vec![87, 88, 89]);
    assert_eq!(append(&stream, 2).first_offset, 90);
    stream.flush().unwrap();
    // Readers share the stream: it closes when the last one goes.
    drop(last);
    drop(stream);
    let stream = Stream::open(&dir.0, config()).unwrap();
    let records = read_all(&mut stream.reader(OffsetSpec::First).unwrap()).unwrap();
    assert_eq!(offsets(&records), (0..92).collect::<Vec<_>>());
    check_records(&records);
}

#[test]
fn unflushed_appends_may_be_lost_but_never_renumbered() {
    let dir = TempDir::new("unflushed");
    {
        let stream = Stream::open(&dir.0, config()).unwrap();
        append(&stream, 3);
        stream.flush().unwrap();
        append(&stream, 3);
        // Dropped without a flush: the chunk is in the file, not indexed.
    }
    let stream = Stream::open(&dir.0, config()).unwrap();
    // The chunk was whole, so it is kept and indexed at open.
    assert_eq!(stream.committed_offset(), 6);
    let records = read_all(&mut stream.reader(OffsetSpec::Offset(4)).unwrap()).unwrap();
    assert_eq!(offsets(&records), vec![4, 5]);
}

#[test]
fn a_torn_last_chunk_is_cut_at_open() {
    let dir = TempDir::new("torn");
    let segment_path = dir.0.join(format!("{:020}.segment", 0));
    let good_end;
    {
        let stream = Stream::open(&dir.0, config()).unwrap();
        append(&stream, 3);
        append(&stream, 3);
        stream.flush().unwrap();
        good_end = std::fs::metadata(&segment_path).unwrap().len();
        append(&stream, 3);
    }
    // The last write was cut short by a crash.
    truncate(&segment_path, good_end + 30);
    let stream = Stream::open(&dir.0, config()).unwrap();
    assert_eq!(stream.committed_offset(), 6);
    assert_eq!(std::fs::metadata(&segment_path).unwrap().len(), good_end);
    // The cut offsets are given again, to new records.
    assert_eq!(append(&stream, 1).first_offset, 6);
    stream.flush().unwrap();
    let records = read_all(&mut stream.reader(OffsetSpec::First).unwrap()).unwrap();
    assert_eq!(offsets(&records), (0..7).collect::<Vec<_>>());
    check_records(&records);
}

#[test]
fn garbage_after_the_last_chunk_is_cut_at_open() {
    let dir = TempDir::new("garbage-tail");
    let segment_path = dir.0.join(format!("{:020}.segment", 0));
    {
        let stream = Stream::open(&dir.0, config()).unwrap();
        append(&stream, 2);
        stream.flush().unwrap();
    }
    let len = std::fs::metadata(&segment_path).unwrap().len();
    let file = OpenOptions::new().write(true).open(&segment_path).unwrap();
    // Zeroes, as a file extended by a crash mid-write reads back.
    file.write_all_at(&[0u8; 4096], len).unwrap();
    let stream = Stream::open(&dir.0, config()).unwrap();
    assert_eq!(stream.committed_offset(), 2);
    assert_eq!(std::fs::metadata(&segment_path).unwrap().len(), len);
}

#[test]
fn a_torn_index_tail_is_dropped_and_rebuilt() {
    let dir = TempDir::new("torn-index");
    let index_path = dir.0.join(format!("{:020}.index", 0));
    {
        let stream = Stream::open(&dir.0, config()).unwrap();
        for _ in 0..5 {
            append(&stream, 2);
        }
        stream.flush().unwrap();
    }
    let len = std::fs::metadata(&index_path).unwrap().len();
    // Half an entry, then an entry's worth of zeroes.
    truncate(&index_path, len - 20);
    let file = OpenOptions::new().write(true).open(&index_path).unwrap();
    file.write_all_at(&[0u8; 40], len - 20).unwrap();
    let stream = Stream::open(&dir.0, config()).unwrap();
    assert_eq!(stream.committed_offset(), 10);
    assert_eq!(std::fs::metadata(&index_path).unwrap().len(), len);
    let records = read_all(&mut stream.reader(OffsetSpec::Offset(9)).unwrap()).unwrap();
    assert_eq!(offsets(&records), vec![9]);
}

#[test]
fn damage_in_the_middle_is_reported_when_read() {
    let dir = TempDir::new("middle");
    let positions: Vec<u64>;
    {
        let stream = Stream::open(&dir.0, config()).unwrap();
        positions = (0..3).map(|_| append(&stream, 2).position).collect();
        stream.flush().unwrap();
    }
    let segment_path = dir.0.join(format!("{:020}.segment", 0));
    flip_byte(&segment_path, positions[1] + 50);
    // Open checks the tail only, which is good.
    let stream = Stream::open(&dir.0, config()).unwrap();
    let mut reader = stream.reader(OffsetSpec::First).unwrap();
    assert_eq!(
        offsets(
            &reader
                .read()
                .unwrap()
                .unwrap()
                .records()
                .collect::<Vec<_>>()
        ),
        vec![0, 1]
    );
    let err = reader.read().unwrap_err();
    match &err {
        StreamError::Corrupt {
            path,
            position,
            offset,
            ..
        } => {
            assert_eq!(path, &segment_path);
            assert_eq!((*position, *offset), (positions[1], Some(2)));
        }
        other => panic!("{other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("00000000000000000000.segment") && text.contains("offset 2"),
        "{text}"
    );
    // The damage stays reported; it is never skipped.
    assert!(reader.read().unwrap_err().is_corrupt());
    // Past the damage, the log is readable.
    let mut after = stream.reader(OffsetSpec::Offset(4)).unwrap();
    assert_eq!(offsets(&read_all(&mut after).unwrap()), vec![4, 5]);
}

#[test]
fn damage_in_the_last_indexed_chunk_is_reported_at_open() {
    let dir = TempDir::new("last-damaged");
    let last;
    {
        let stream = Stream::open(&dir.0, config()).unwrap();
        append(&stream, 2);
        last = append(&stream, 2);
        stream.flush().unwrap();
    }
    let segment_path = dir.0.join(format!("{:020}.segment", 0));
    flip_byte(&segment_path, last.position + 45);
    let err = Stream::open(&dir.0, config()).unwrap_err();
    match err {
        StreamError::Corrupt {
            path,
            position,
            offset,
            ..
        } => {
            assert_eq!(path, segment_path);
            assert_eq!((position, offset), (last.position, Some(2)));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn damage_followed_by_good_chunks_is_not_taken_for_a_torn_tail() {
    let dir = TempDir::new("not-torn");
    let positions: Vec<u64>;
    {
        let stream = Stream::open(&dir.0, config()).unwrap();
        positions = (0..4).map(|_| append(&stream, 2).position).collect();
        stream.flush().unwrap();
    }
    // The index lost its last three entries (never synced), and the chunk
    // after the last entry is damaged while the two after it are good.
    let index_path = dir.0.join(format!("{:020}.index", 0));
    truncate(&index_path, index::HEADER_LEN + index::ENTRY_LEN);
    let segment_path = dir.0.join(format!("{:020}.segment", 0));
    flip_byte(&segment_path, positions[1] + 3);
    let err = Stream::open(&dir.0, config()).unwrap_err();
    match err {
        StreamError::Corrupt {
            path,
            position,
            offset,
            reason,
        } => {
            assert_eq!(path, segment_path);
            assert_eq!((position, offset), (positions[1], Some(2)));
            assert!(
                reason.contains(&format!("good chunks follow at byte {}", positions[2])),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_missing_index_is_rebuilt_from_its_segment() {
    let dir = TempDir::new("rebuild");
    {
        let stream = Stream::open(&dir.0, small_segments(400)).unwrap();
        for _ in 0..30 {
            append(&stream, 3);
        }
        stream.flush().unwrap();
    }
    let indexes = files(&dir.0, "index");
    assert!(indexes.len() >= 3);
    let before: Vec<Vec<u8>> = indexes.iter().map(|p| std::fs::read(p).unwrap()).collect();
    std::fs::remove_file(&indexes[0]).unwrap();
    std::fs::remove_file(&indexes[indexes.len() - 1]).unwrap();
    let stream = Stream::open(&dir.0, small_segments(400)).unwrap();
    let after: Vec<Vec<u8>> = indexes.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert_eq!(before, after);
    assert_eq!(stream.committed_offset(), 90);
    let records = read_all(&mut stream.reader(OffsetSpec::Offset(4)).unwrap()).unwrap();
    assert_eq!(offsets(&records), (4..90).collect::<Vec<_>>());
}

#[test]
fn a_segment_missing_in_the_middle_is_reported() {
    let dir = TempDir::new("missing-segment");
    {
        let stream = Stream::open(&dir.0, small_segments(400)).unwrap();
        for _ in 0..30 {
            append(&stream, 3);
        }
        stream.flush().unwrap();
    }
    let segments = files(&dir.0, "segment");
    std::fs::remove_file(&segments[1]).unwrap();
    let err = Stream::open(&dir.0, small_segments(400)).unwrap_err();
    assert!(err.is_corrupt(), "{err}");
    assert!(
        err.to_string().contains("index without its segment file"),
        "{err}"
    );
    // Index gone too: the gap is found by the reader that reaches it.
    std::fs::remove_file(segments[1].with_extension("index")).unwrap();
    let stream = Stream::open(&dir.0, small_segments(400)).unwrap();
    let err = read_all(&mut stream.reader(OffsetSpec::First).unwrap()).unwrap_err();
    assert!(err.is_corrupt(), "{err}");
}

#[test]
fn huge_offsets_are_handled_without_overflow() {
    let dir = TempDir::new("huge");
    std::fs::create_dir_all(&dir.0).unwrap();
    let base = u64::MAX - 5;
    segment::create(&dir.0, base).unwrap();
    let stream = Stream::open(&dir.0, small_segments(200)).unwrap();
    assert_eq!(
        (stream.first_offset(), stream.committed_offset()),
        (base, base)
    );
    for _ in 0..5 {
        append(&stream, 1);
    }
    stream.flush().unwrap();
    assert_eq!(stream.committed_offset(), u64::MAX);
    let mut batch = Batch::new();
    batch.push(b"one too many").unwrap();
    assert!(matches!(
        stream.append(batch),
        Err(StreamError::OffsetOverflow)
    ));
    for (spec, expect) in [
        (OffsetSpec::First, 5),
        (OffsetSpec::Offset(u64::MAX - 1), 1),
        (OffsetSpec::Offset(u64::MAX), 0),
        (OffsetSpec::Offset(0), 5),
        (OffsetSpec::Last, 1),
    ] {
        let records = read_all(&mut stream.reader(spec).unwrap()).unwrap();
        assert_eq!(records.len(), expect, "{spec:?}");
        check_records(&records);
    }
    drop(stream);
    let stream = Stream::open(&dir.0, small_segments(200)).unwrap();
    assert_eq!(stream.committed_offset(), u64::MAX);
}

#[test]
fn a_reader_keeps_up_with_a_concurrent_writer() {
    let dir = TempDir::new("concurrent");
    let stream = Stream::open(&dir.0, small_segments(2_000)).unwrap();
    let writer = {
        let stream = stream.clone();
        std::thread::spawn(move || {
            for i in 0..300u64 {
                append(&stream, 1 + i % 4);
                if i % 3 == 0 {
                    stream.flush().unwrap();
                }
            }
            stream.flush().unwrap()
        })
    };
    let mut reader = stream.reader(OffsetSpec::First).unwrap();
    let mut seen = Vec::new();
    let mut end = None;
    for _ in 0..100_000 {
        while let Some(chunk) = reader.read().unwrap() {
            seen.extend(chunk.records());
        }
        if end.is_none() && writer.is_finished() {
            end = Some(stream.committed_offset());
        }
        if end.is_some_and(|e| reader.next_offset() >= e) {
            break;
        }
        reader.wait(Duration::from_millis(50));
    }
    let total = writer.join().unwrap();
    assert_eq!(offsets(&seen), (0..total).collect::<Vec<_>>());
    check_records(&seen);
}

#[test]
fn concurrent_appenders_get_dense_offsets_and_a_flush_covers_them_all() {
    let dir = TempDir::new("group-commit");
    let stream = Stream::open(&dir.0, small_segments(4_000)).unwrap();
    let appenders: Vec<_> = (0..4)
        .map(|t| {
            let stream = stream.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| {
                        let mut batch = Batch::new();
                        for r in 0..3 {
                            batch.push(format!("{t}-{i}-{r}").as_bytes()).unwrap();
                        }
                        let done = stream.append(batch).unwrap();
                        if i % 10 == 0 {
                            // Any thread may flush; it covers the others' appends too.
                            Flushable::flush(&stream).unwrap();
                        }
                        done
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<Appended> = appenders
        .into_iter()
        .flat_map(|a| a.join().unwrap())
        .collect();
    assert!(Flushable::needs_flush(&stream) || stream.committed_offset() == 600);
    assert_eq!(stream.flush().unwrap(), 600);
    assert!(!Flushable::needs_flush(&stream));
    all.sort_by_key(|a| a.first_offset);
    let mut next = 0;
    for a in &all {
        assert_eq!((a.first_offset, a.next_offset), (next, next + 3));
        next = a.next_offset;
    }
    let records = read_all(&mut stream.reader(OffsetSpec::First).unwrap()).unwrap();
    assert_eq!(offsets(&records), (0..600).collect::<Vec<_>>());
}

#[test]
fn live_readers_are_served_from_the_tail_in_memory() {
    let dir = TempDir::new("tail-cache");
    let stream = Stream::open(&dir.0, config()).unwrap();
    append(&stream, 2);
    stream.flush().unwrap();
    let mut reader = stream.reader(OffsetSpec::Next).unwrap();
    append(&stream, 3);
    stream.flush().unwrap();
    // With the file gone, only the in-memory tail can answer.
    std::fs::remove_file(dir.0.join(format!("{:020}.segment", 0))).unwrap();
    assert_eq!(offsets(&read_all(&mut reader).unwrap()), vec![2, 3, 4]);
}

#[test]
fn filtered_readers_skip_chunks_without_their_values() {
    let dir = TempDir::new("filter");
    let stream = Stream::open(&dir.0, config()).unwrap();
    for (i, value) in ["eu", "us", "eu", "asia"].iter().enumerate() {
        let mut batch = Batch::new();
        batch
            .push_filtered(format!("{i}").as_bytes(), value.as_bytes())
            .unwrap();
        stream.append(batch).unwrap();
    }
    let mut plain = Batch::new();
    plain.push(b"4").unwrap();
    stream.append(plain).unwrap();
    stream.flush().unwrap();
    let read_with = |values: &[&str], match_unfiltered: bool| {
        let mut reader = stream.reader(OffsetSpec::First).unwrap();
        reader.set_filter(Some(FilterSpec {
            values: values
                .iter()
                .map(|v| Bytes::copy_from_slice(v.as_bytes()))
                .collect(),
            match_unfiltered,
        }));
        offsets(&read_all(&mut reader).unwrap())
    };
    assert_eq!(read_with(&["eu"], false), vec![0, 2]);
    assert_eq!(read_with(&["us", "asia"], false), vec![1, 3]);
    assert_eq!(read_with(&["eu"], true), vec![0, 2, 4]);
    assert_eq!(read_with(&[], false), Vec::<u64>::new());
}

#[test]
fn a_stream_is_opened_by_one_owner_at_a_time() {
    let dir = TempDir::new("lock");
    let stream = Stream::open(&dir.0, config()).unwrap();
    assert!(matches!(
        Stream::open(&dir.0, config()),
        Err(StreamError::Locked { .. })
    ));
    drop(stream);
    Stream::open(&dir.0, config()).unwrap();
}

#[test]
fn a_deleted_stream_is_gone() {
    let dir = TempDir::new("delete");
    let stream = Stream::open(&dir.0, config()).unwrap();
    append(&stream, 1);
    stream.flush().unwrap();
    let mut reader = stream.reader(OffsetSpec::First).unwrap();
    stream.delete().unwrap();
    assert!(!dir.0.exists());
    assert!(matches!(reader.read(), Err(StreamError::Deleted { .. })));
    assert!(matches!(
        stream.append(Batch::new()),
        Err(StreamError::EmptyBatch)
    ));
    let mut batch = Batch::new();
    batch.push(b"x").unwrap();
    assert!(matches!(
        stream.append(batch),
        Err(StreamError::Deleted { .. })
    ));
}

#[test]
fn synced_flushes_work_the_same() {
    let dir = TempDir::new("sync");
    let config = StreamConfig {
        max_segment_size_bytes: 300,
        ..StreamConfig::default()
    };
    {
        let stream = Stream::open(&dir.0, config.clone()).unwrap();
        for _ in 0..10 {
            append(&stream, 3);
        }
        assert_eq!(stream.flush().unwrap(), 30);
    }
    let stream = Stream::open(&dir.0, config).unwrap();
    let records = read_all(&mut stream.reader(OffsetSpec::First).unwrap()).unwrap();
    assert_eq!(offsets(&records), (0..30).collect::<Vec<_>>());
}

/// A small deterministic generator, so a failing case can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Whatever the files hold, opening and reading give records or errors:
/// never a panic, never a hang, never an allocation sized by garbage.
#[test]
fn random_damage_never_panics() {
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    for case in 0..150 {
        let dir = TempDir::new("fuzz");
        {
            let stream = Stream::open(&dir.0, small_segments(600)).unwrap();
            for _ in 0..(1 + rng.below(25)) {
                let first = stream.next_offset();
                let mut batch = Batch::new();
                for o in first..first + 1 + rng.below(5) {
                    if rng.below(3) == 0 {
                        batch.push_filtered(&record(o), b"f").unwrap();
                    } else {
                        batch.push(&record(o)).unwrap();
                    }
                }
                stream.append(batch).unwrap();
                if rng.below(3) == 0 {
                    stream.flush().unwrap();
                }
            }
            if rng.below(2) == 0 {
                stream.flush().unwrap();
            }
        }
        let mut all = files(&dir.0, "segment");
        all.extend(files(&dir.0, "index"));
        for _ in 0..(1 + rng.below(4)) {
            let path = &all[rng.below(all.len() as u64) as usize];
            let Ok(file) = OpenOptions::new().read(true).write(true).open(path) else {
                continue;
            };
            let len = file.metadata().unwrap().len();
            match rng.below(5) {
                0 => file.set_len(rng.below(len + 1)).unwrap(),
                1 => {
                    // Random bytes, often where lengths live.
                    let at = rng.below(len + 1);
                    let junk: Vec<u8> = (0..1 + rng.below(64)).map(|_| rng.next() as u8).collect();
                    file.write_all_at(&junk, at).unwrap();
                }
                2 => {
                    let junk: Vec<u8> = (0..rng.below(3_000)).map(|_| rng.next() as u8).collect();
                    file.set_len(0).unwrap();
                    file.write_all_at(&junk, 0).unwrap();
                }
                3 => {
                    // 0xFF bytes: every length at its largest.
                    let at = rng.below(len + 1);
                    file.write_all_at(&[0xFF; 12], at).unwrap();
                }
                _ => {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        let Ok(stream) = Stream::open(&dir.0, small_segments(600)) else {
            continue;
        };
        for spec in [
            OffsetSpec::First,
            OffsetSpec::Last,
            OffsetSpec::Offset(rng.below(80)),
            OffsetSpec::Timestamp(now_ms() - rng.below(10) as i64),
        ] {
            let Ok(mut reader) = stream.reader(spec) else {
                continue;
            };
            if rng.below(2) == 0 {
                reader.set_filter(Some(FilterSpec {
                    values: vec![Bytes::from_static(b"f")],
                    match_unfiltered: true,
                }));
            }
            for _ in 0..1_000 {
                match reader.read() {
                    Ok(Some(chunk)) => {
                        let _ = chunk.records().count();
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
        // Still writable when it opened.
        let mut batch = Batch::new();
        batch.push(b"after").unwrap();
        if stream.append(batch).is_ok() {
            stream
                .flush()
                .unwrap_or_else(|e| panic!("case {case}: {e}"));
        }
    }
}
