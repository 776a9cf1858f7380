//! Benchmark of the stream log alone (no broker, no network): what the
//! storage under stream queues can do on this machine.
//!
//! ```text
//! cargo run --release --example stream_log -- append  [--dir D] [--record 1024] [--batch 100] [--seconds 5] [--publishers 1]
//! cargo run --release --example stream_log -- replay  [--dir D] [--record 100] [--count 10000000] [--batch 100] [--readers 1,10]
//! cargo run --release --example stream_log -- open    [--dir D] [--record 1024] [--gb 4] [--segment-mb 500]
//! ```
//!
//! - `append`: `--publishers` threads append batches of `--batch` records;
//!   each waits for a flush (fdatasync) covering its batch, as a publisher
//!   waits for its confirm. With one publisher that is one fsync per batch;
//!   with several, a flusher thread covers all waiting batches with one
//!   fsync (the group commit the broker's syncer does).
//! - `replay`: fill `--count` records, then read them all from `first` with
//!   1 reader, then with 10 concurrent readers; RSS is sampled as the
//!   readers go, to show it does not grow with the stream.
//! - `open`: grow a stream to `--gb` and time `Stream::open` at several
//!   sizes on the way.
//!
//! Everything it writes is under `--dir` (default: a fresh temporary
//! directory), removed at the end.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use warren::stream::{Batch, OffsetSpec, Stream, StreamConfig};

struct Args {
    mode: String,
    dir: PathBuf,
    record: usize,
    batch: usize,
    seconds: u64,
    publishers: usize,
    count: u64,
    readers: Vec<usize>,
    gb: u64,
    segment_mb: u64,
}

fn args() -> Args {
    let mut it = std::env::args().skip(1);
    let mode = it.next().unwrap_or_default();
    let mut a = Args {
        dir: std::env::temp_dir().join(format!("warren-stream-bench-{}", std::process::id())),
        record: if mode == "replay" { 100 } else { 1024 },
        batch: 100,
        seconds: 5,
        publishers: 1,
        count: 10_000_000,
        readers: vec![1, 10],
        gb: 4,
        segment_mb: 500,
        mode,
    };
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        let n = || {
            value
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("{flag} wants a number"))
        };
        match flag.as_str() {
            "--dir" => a.dir = PathBuf::from(&value),
            "--record" => a.record = n() as usize,
            "--batch" => a.batch = n() as usize,
            "--seconds" => a.seconds = n(),
            "--publishers" => a.publishers = n() as usize,
            "--count" => a.count = n(),
            "--readers" => {
                a.readers = value
                    .split(',')
                    .map(|v| v.parse().expect("--readers 1,10"))
                    .collect()
            }
            "--gb" => a.gb = n(),
            "--segment-mb" => a.segment_mb = n(),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn main() {
    let a = args();
    let run = match a.mode.as_str() {
        "append" => append,
        "replay" => replay,
        "open" => open,
        _ => {
            eprintln!("usage: stream_log append|replay|open [flags] (see the file's header)");
            return;
        }
    };
    let _ = std::fs::remove_dir_all(&a.dir);
    run(&a);
    let _ = std::fs::remove_dir_all(&a.dir);
}

fn batch_of(count: usize, record: &[u8]) -> Batch {
    let mut batch = Batch::new();
    for _ in 0..count {
        batch.push(record).expect("record fits");
    }
    batch
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn du_mb(dir: &Path) -> f64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum::<u64>()
        })
        .unwrap_or(0) as f64
        / 1e6
}

/// Drop this stream's files from the page cache (only its own files: the
/// machine is shared).
fn evict(dir: &Path) {
    use std::os::unix::io::AsRawFd;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if let Ok(file) = std::fs::File::open(entry.path()) {
            let _ = file.sync_all();
            // SAFETY: advice on a descriptor this function owns.
            unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        }
    }
}

fn append(a: &Args) {
    let stream = Stream::open(&a.dir, StreamConfig::default()).expect("open");
    let record = vec![0x5au8; a.record];
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    let records = Arc::new(AtomicU64::new(0));
    let flushes = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    if a.publishers <= 1 {
        // One publisher: append, flush, confirm, again.
        while Instant::now() < deadline {
            stream.append(batch_of(a.batch, &record)).expect("append");
            stream.flush().expect("flush");
            records.fetch_add(a.batch as u64, Ordering::Relaxed);
            flushes.fetch_add(1, Ordering::Relaxed);
        }
    } else {
        // Several publishers and one flusher: each publisher waits until
        // the committed offset passes its batch.
        let stop = Arc::new(AtomicBool::new(false));
        let flusher = {
            let (stream, stop, flushes) = (stream.clone(), stop.clone(), flushes.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    if stream.next_offset() == stream.committed_offset() {
                        std::thread::yield_now();
                        continue;
                    }
                    stream.flush().expect("flush");
                    flushes.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        let publishers: Vec<_> = (0..a.publishers)
            .map(|_| {
                let (stream, records, record) = (stream.clone(), records.clone(), record.clone());
                let batch = a.batch;
                std::thread::spawn(move || {
                    while Instant::now() < deadline {
                        let done = stream.append(batch_of(batch, &record)).expect("append");
                        while !stream.wait_for(done.next_offset - 1, Duration::from_secs(1)) {}
                        records.fetch_add(batch as u64, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for p in publishers {
            p.join().expect("publisher");
        }
        stop.store(true, Ordering::Release);
        flusher.join().expect("flusher");
    }
    let secs = started.elapsed().as_secs_f64();
    let n = records.load(Ordering::Relaxed) as f64;
    let f = flushes.load(Ordering::Relaxed) as f64;
    println!(
        "{{\"scenario\":\"append\",\"record_bytes\":{},\"batch\":{},\"publishers\":{},\"seconds\":{secs:.2},\"records_per_s\":{:.0},\"mb_per_s\":{:.1},\"fsyncs_per_s\":{:.0},\"records_per_fsync\":{:.1}}}",
        a.record,
        a.batch,
        a.publishers.max(1),
        n / secs,
        n * a.record as f64 / secs / 1e6,
        f / secs,
        n / f.max(1.0)
    );
}

fn fill(stream: &Stream, count: u64, batch: usize, record: &[u8], flush_every: u64) {
    let mut done = 0u64;
    let mut since_flush = 0u64;
    while done < count {
        let n = (count - done).min(batch as u64) as usize;
        stream.append(batch_of(n, record)).expect("append");
        done += n as u64;
        since_flush += n as u64;
        if since_flush >= flush_every {
            stream.flush().expect("flush");
            since_flush = 0;
        }
    }
    stream.flush().expect("flush");
}

fn replay(a: &Args) {
    // Filling is not what is measured: no fsync per batch.
    let config = StreamConfig {
        sync: false,
        ..StreamConfig::default()
    };
    let stream = Stream::open(&a.dir, config).expect("open");
    let record = vec![0x33u8; a.record];
    let rss_empty = rss_mb();
    let started = Instant::now();
    fill(&stream, a.count, a.batch, &record, 1_000_000);
    eprintln!(
        "filled {} records ({:.0} MB on disk) in {:.1}s; RSS {:.1} MB (empty: {rss_empty:.1} MB)",
        a.count,
        du_mb(&a.dir),
        started.elapsed().as_secs_f64(),
        rss_mb()
    );
    for &readers in &a.readers {
        let rss_before = rss_mb();
        let peak = Arc::new(AtomicU64::new(0));
        let samples = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let started = Instant::now();
        let threads: Vec<_> = (0..readers)
            .map(|i| {
                let (stream, peak, samples) = (stream.clone(), peak.clone(), samples.clone());
                let count = a.count;
                std::thread::spawn(move || {
                    let mut reader = stream.reader(OffsetSpec::First).expect("reader");
                    let (mut n, mut bytes, mut next_sample) = (0u64, 0u64, count / 5);
                    while let Some(chunk) = reader.read().expect("read") {
                        for (_, r) in chunk.records() {
                            n += 1;
                            bytes += r.len() as u64;
                        }
                        if i == 0 && n >= next_sample {
                            let rss = rss_mb();
                            samples.lock().push((n, rss));
                            peak.fetch_max(rss as u64, Ordering::Relaxed);
                            next_sample += count / 5;
                        }
                    }
                    assert_eq!(n, count, "reader {i} read everything");
                    bytes
                })
            })
            .collect();
        let bytes: u64 = threads.into_iter().map(|t| t.join().expect("reader")).sum();
        let secs = started.elapsed().as_secs_f64();
        let total = a.count as f64 * readers as f64;
        let samples: Vec<String> = samples
            .lock()
            .iter()
            .map(|(n, rss)| format!("[{n},{rss:.1}]"))
            .collect();
        println!(
            "{{\"scenario\":\"replay\",\"record_bytes\":{},\"count\":{},\"readers\":{readers},\"seconds\":{secs:.2},\"records_per_s\":{:.0},\"mb_per_s\":{:.0},\"rss_before_mb\":{rss_before:.1},\"rss_samples_records_mb\":[{}]}}",
            a.record,
            a.count,
            total / secs,
            bytes as f64 / secs / 1e6,
            samples.join(",")
        );
    }
}

fn open(a: &Args) {
    let config = StreamConfig {
        sync: false,
        max_segment_size_bytes: a.segment_mb * 1_000_000,
        ..StreamConfig::default()
    };
    let record = vec![0x77u8; a.record];
    let target = a.gb * 1_000_000_000;
    let mut size = 0u64;
    let mut step = 1_000_000u64;
    loop {
        {
            let stream = Stream::open(&a.dir, config.clone()).expect("open");
            let per_record = a.record as u64 + 4;
            let records = (step.saturating_sub(size)) / per_record;
            fill(&stream, records, a.batch, &record, 100_000);
        }
        size = (du_mb(&a.dir) * 1e6) as u64;
        // Time a few opens, each with the stream's pages dropped from the
        // page cache first (cold), with the broker's default config (sync
        // on), and take the median.
        let opening = StreamConfig {
            sync: true,
            ..config.clone()
        };
        let mut times: Vec<f64> = (0..5)
            .map(|_| {
                evict(&a.dir);
                let started = Instant::now();
                let stream = Stream::open(&a.dir, opening.clone()).expect("open");
                let t = started.elapsed().as_secs_f64() * 1e3;
                drop(stream);
                t
            })
            .collect();
        times.sort_by(|x, y| x.total_cmp(y));
        let segments = std::fs::read_dir(&a.dir)
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "segment"))
                })
                .count()
            })
            .unwrap_or(0);
        println!(
            "{{\"scenario\":\"open\",\"stream_mb\":{:.0},\"segments\":{segments},\"open_ms_median\":{:.2},\"open_ms_max\":{:.2}}}",
            size as f64 / 1e6,
            times[2],
            times[4]
        );
        if step >= target {
            break;
        }
        step = (step * 10).min(target);
    }
}
