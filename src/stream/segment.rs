//! Segment files: chunks appended one after another, named by the offset
//! of their first record (`00000000000000000000.segment`, with the index
//! beside it as `….index`), so the list of segments and where each offset
//! lives come from a directory listing, without opening any file.
//!
//! ```text
//! segment: "WSEG" | version:u32 = 1 | chunk*
//! ```
//!
//! This file also holds the checks run at open: the tail of the last
//! segment (cut a torn chunk, re-index chunks written after the last index
//! entry) and the rebuild of a missing index.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tracing::warn;

use super::chunk::{self, ChunkHeader, Fault};
use super::error::{IoContext, StreamError};
use super::index::{self, INDEX_HEADER, IndexEntry};

pub const SEGMENT_HEADER: [u8; 8] = *b"WSEG\0\0\0\x01";
pub const HEADER_LEN: u64 = SEGMENT_HEADER.len() as u64;

const SEGMENT_EXT: &str = "segment";
const INDEX_EXT: &str = "index";
const TMP_EXT: &str = "tmp";

pub fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.{SEGMENT_EXT}"))
}

pub fn index_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.{INDEX_EXT}"))
}

fn index_tmp_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.{INDEX_EXT}.{TMP_EXT}"))
}

/// What a file in a stream directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Segment,
    Index,
    /// An index being rebuilt when the process stopped.
    IndexTmp,
}

/// `00000000000000000042.segment` → (42, Segment).
pub fn parse_name(name: &str) -> Option<(u64, FileKind)> {
    let (stem, kind) = if let Some(stem) = name.strip_suffix(".segment") {
        (stem, FileKind::Segment)
    } else if let Some(stem) = name.strip_suffix(".index") {
        (stem, FileKind::Index)
    } else if let Some(stem) = name.strip_suffix(".index.tmp") {
        (stem, FileKind::IndexTmp)
    } else {
        return None;
    };
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok().map(|base| (base, kind))
}

/// Create the files of a new, empty segment. The caller syncs the directory.
/// On failure neither file is left behind, so the creation can be retried.
pub fn create(dir: &Path, base: u64) -> Result<(File, File), StreamError> {
    let seg_path = segment_path(dir, base);
    let idx_path = index_path(dir, base);
    let seg = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&seg_path)
        .at(&seg_path)?;
    let rest = (|| {
        seg.write_all_at(&SEGMENT_HEADER, 0).at(&seg_path)?;
        let idx = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(&idx_path)
            .at(&idx_path)?;
        // Appending to an empty file: the header lands at 0.
        if let Err(e) = (&idx).write_all(&INDEX_HEADER) {
            let _ = std::fs::remove_file(&idx_path);
            return Err(StreamError::io(&idx_path, e));
        }
        Ok(idx)
    })();
    match rest {
        Ok(idx) => Ok((seg, idx)),
        Err(e) => {
            // Only the segment file this call created is removed.
            let _ = std::fs::remove_file(&seg_path);
            Err(e)
        }
    }
}

/// Check a segment file's header.
pub fn check_header(file: &File, path: &Path) -> Result<(), StreamError> {
    let mut header = [0u8; HEADER_LEN as usize];
    match file.read_exact_at(&mut header, 0) {
        Ok(()) if header == SEGMENT_HEADER => Ok(()),
        Ok(()) => Err(StreamError::corrupt(
            path,
            0,
            None,
            "not a segment file (bad header)",
        )),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(StreamError::corrupt(
            path,
            0,
            None,
            "segment file shorter than its header",
        )),
        Err(e) => Err(StreamError::io(path, e)),
    }
}

/// Read and check the chunk at `position`, reading nothing at or past
/// `limit`. Lengths come from the checked header and are held against
/// `limit` before anything is allocated. `Ok(Err(fault))` is damaged or
/// missing data; `Err` is an I/O error.
pub fn read_chunk(
    file: &File,
    path: &Path,
    position: u64,
    limit: u64,
) -> Result<Result<(ChunkHeader, Vec<u8>), Fault>, StreamError> {
    let mut raw = [0u8; chunk::HEADER_LEN];
    if position.saturating_add(chunk::HEADER_LEN as u64) > limit {
        return Ok(Err(Fault::Short));
    }
    file.read_exact_at(&mut raw, position).at(path)?;
    let header = match ChunkHeader::decode(&raw) {
        Ok(h) => h,
        Err(fault) => return Ok(Err(fault)),
    };
    if position.saturating_add(header.total_len()) > limit {
        return Ok(Err(Fault::Short));
    }
    let mut bytes = vec![0u8; header.total_len() as usize];
    file.read_exact_at(&mut bytes, position).at(path)?;
    Ok(header
        .check_body(&bytes[chunk::HEADER_LEN..])
        .map(|()| (header, bytes)))
}

/// What a forward scan of chunks found.
#[derive(Debug, Default)]
pub struct Scan {
    pub entries: Vec<IndexEntry>,
    /// Where the last good chunk ends.
    pub end: u64,
    pub next_offset: u64,
    /// The first bad chunk: its position and why.
    pub fault: Option<(u64, Fault)>,
}

/// Check chunks from `from` (where a chunk starting at `next_offset`
/// should be) to `limit`, stopping at the first that is not good.
pub fn scan(
    file: &File,
    path: &Path,
    from: u64,
    limit: u64,
    next_offset: u64,
) -> Result<Scan, StreamError> {
    let mut scan = Scan {
        end: from,
        next_offset,
        ..Scan::default()
    };
    while scan.end < limit {
        match read_chunk(file, path, scan.end, limit)? {
            Ok((header, _)) if header.first_offset != scan.next_offset => {
                scan.fault = Some((scan.end, Fault::Sequence));
                break;
            }
            Ok((header, _)) => {
                scan.entries.push(IndexEntry::of(&header, scan.end));
                scan.end += header.total_len();
                scan.next_offset = header.next_offset();
            }
            Err(fault) => {
                scan.fault = Some((scan.end, fault));
                break;
            }
        }
    }
    Ok(scan)
}

/// Is there a good chunk anywhere after `from` (up to `limit`)? Used to tell
/// a torn tail (nothing good after the damage) from damage in the middle.
/// Looks only at bytes equal to the chunk magic, so random data costs
/// little.
fn good_chunk_after(
    file: &File,
    path: &Path,
    from: u64,
    limit: u64,
) -> Result<Option<u64>, StreamError> {
    const BLOCK: u64 = 1 << 20;
    let mut block = Vec::new();
    let mut at = from.saturating_add(1);
    while at < limit {
        let len = BLOCK.min(limit - at) as usize;
        block.resize(len, 0);
        file.read_exact_at(&mut block, at).at(path)?;
        for (i, _) in block
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == chunk::MAGIC)
        {
            let position = at + i as u64;
            if read_chunk(file, path, position, limit)?.is_ok() {
                return Ok(Some(position));
            }
        }
        at += len as u64;
    }
    Ok(None)
}

/// The last segment after its tail was checked.
#[derive(Debug)]
pub struct Tail {
    pub segment: File,
    pub index: File,
    /// Bytes of good chunks (where the next chunk goes).
    pub size: u64,
    pub next_offset: u64,
    pub last: Option<IndexEntry>,
}

/// Check the tail of the last segment and bring its index up to date:
/// - index entries at the end that do not check out (torn or zeroed: the
///   index is written after the data and not always synced) are dropped;
/// - the chunk of the last good entry must be good (its entry was written
///   after it was synced): if it is not, the stream is damaged;
/// - chunks after the last entry are checked one by one and indexed; at the
///   first bad one, if nothing good follows, the tail is torn (a write cut
///   by a crash, never confirmed) and is cut; if good chunks follow, the
///   damage is in the middle and is reported.
///
/// The work is proportional to what was written after the last index entry
/// reached the disk, not to the segment's length.
pub fn recover_tail(dir: &Path, base: u64) -> Result<Tail, StreamError> {
    let seg_path = segment_path(dir, base);
    let idx_path = index_path(dir, base);
    let segment = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg_path)
        .at(&seg_path)?;
    let mut seg_len = segment.metadata().at(&seg_path)?.len();
    if seg_len < HEADER_LEN {
        // Created just before a crash: the header itself may be torn.
        let mut head = vec![0u8; seg_len as usize];
        segment.read_exact_at(&mut head, 0).at(&seg_path)?;
        if !SEGMENT_HEADER.starts_with(&head) {
            return Err(StreamError::corrupt(
                &seg_path,
                0,
                None,
                "not a segment file (bad header)",
            ));
        }
        segment.set_len(0).at(&seg_path)?;
        segment.write_all_at(&SEGMENT_HEADER, 0).at(&seg_path)?;
        seg_len = HEADER_LEN;
    } else {
        check_header(&segment, &seg_path)?;
    }

    let mut index_file = open_index_for_repair(&idx_path)?;
    let idx_len = index_file.metadata().at(&idx_path)?.len();
    let mut count = idx_len.saturating_sub(index::HEADER_LEN) / index::ENTRY_LEN;
    let mut last = None;
    while count > 0 {
        let mut raw = [0u8; index::ENTRY_LEN as usize];
        let at = index::HEADER_LEN + (count - 1) * index::ENTRY_LEN;
        index_file.read_exact_at(&mut raw, at).at(&idx_path)?;
        match IndexEntry::decode(&raw) {
            Some(e) => {
                last = Some((at, e));
                break;
            }
            None => count -= 1,
        }
    }
    let (from, next_offset) = match last {
        Some((at, e)) => {
            let good = e.first_offset >= base
                && matches!(read_chunk(&segment, &seg_path, e.position, seg_len)?,
                            Ok((h, _)) if e.describes(&h, e.position));
            if !good {
                return Err(StreamError::corrupt(
                    &seg_path,
                    e.position,
                    Some(e.first_offset),
                    format!(
                        "the chunk indexed at {} (entry at byte {at}) is damaged or missing",
                        idx_path.display()
                    ),
                ));
            }
            (e.end(), e.next_offset())
        }
        None => (HEADER_LEN, base),
    };
    let scan = scan(&segment, &seg_path, from, seg_len, next_offset)?;
    if let Some((position, fault)) = scan.fault {
        if let Some(good) = good_chunk_after(&segment, &seg_path, position, seg_len)? {
            return Err(StreamError::corrupt(
                &seg_path,
                position,
                Some(scan.next_offset),
                format!("{} (good chunks follow at byte {good})", fault.reason()),
            ));
        }
        warn!(
            "{}: cutting a torn tail of {} bytes at byte {position} (offset {}): {}",
            seg_path.display(),
            seg_len - position,
            scan.next_offset,
            fault.reason()
        );
        segment.set_len(position).at(&seg_path)?;
    }
    let keep = index::HEADER_LEN + count * index::ENTRY_LEN;
    if keep != idx_len || !scan.entries.is_empty() {
        index_file.set_len(keep).at(&idx_path)?;
        index_file
            .write_all_at(&index::encode_all(&scan.entries), keep)
            .at(&idx_path)?;
    }
    // Reopen for appending: index entries are only ever added at the end.
    index_file = OpenOptions::new()
        .read(true)
        .append(true)
        .open(&idx_path)
        .at(&idx_path)?;
    let last = scan.entries.last().copied().or(last.map(|(_, e)| e));
    Ok(Tail {
        segment,
        index: index_file,
        size: scan.end,
        next_offset: scan.next_offset,
        last,
    })
}

/// Open an index for checking, starting a fresh one if it is missing or
/// its header is damaged (the index only repeats what the segment holds).
fn open_index_for_repair(path: &Path) -> Result<File, StreamError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .at(path)?;
    let len = file.metadata().at(path)?.len();
    let mut header = [0u8; index::HEADER_LEN as usize];
    let good = len >= index::HEADER_LEN
        && file.read_exact_at(&mut header, 0).is_ok()
        && header == INDEX_HEADER;
    if !good {
        if len > 0 {
            warn!(
                "{}: index header damaged; rebuilding it from the segment",
                path.display()
            );
        }
        file.set_len(0).at(path)?;
        file.write_all_at(&INDEX_HEADER, 0).at(path)?;
    }
    Ok(file)
}

/// Rebuild the index of a sealed segment from its chunks. Every chunk must
/// be good: a sealed segment was synced whole before the next one began.
pub fn rebuild_index(dir: &Path, base: u64) -> Result<(), StreamError> {
    let seg_path = segment_path(dir, base);
    let segment = File::open(&seg_path).at(&seg_path)?;
    check_header(&segment, &seg_path)?;
    let len = segment.metadata().at(&seg_path)?.len();
    let scan = scan(&segment, &seg_path, HEADER_LEN, len, base)?;
    if let Some((position, fault)) = scan.fault {
        return Err(StreamError::corrupt(
            &seg_path,
            position,
            Some(scan.next_offset),
            fault.reason(),
        ));
    }
    let tmp = index_tmp_path(dir, base);
    let file = File::create(&tmp).at(&tmp)?;
    let mut bytes = INDEX_HEADER.to_vec();
    bytes.extend_from_slice(&index::encode_all(&scan.entries));
    file.write_all_at(&bytes, 0).at(&tmp)?;
    file.sync_all().at(&tmp)?;
    let path = index_path(dir, base);
    std::fs::rename(&tmp, &path).at(&path)?;
    warn!(
        "{}: index was missing; rebuilt it ({} chunks)",
        path.display(),
        scan.entries.len()
    );
    Ok(())
}

/// Remove a leftover temporary index.
pub fn remove_tmp(dir: &Path, base: u64) -> Result<(), StreamError> {
    let tmp = index_tmp_path(dir, base);
    std::fs::remove_file(&tmp).at(&tmp)
}

/// Sync a directory, so files created or removed in it stay so.
pub fn sync_dir(dir: &Path) -> Result<(), StreamError> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let dir = Path::new("/x");
        let p = segment_path(dir, u64::MAX);
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_name(name), Some((u64::MAX, FileKind::Segment)));
        assert_eq!(
            parse_name("00000000000000000007.index"),
            Some((7, FileKind::Index))
        );
        assert_eq!(
            parse_name("00000000000000000007.index.tmp"),
            Some((7, FileKind::IndexTmp))
        );
        assert_eq!(parse_name("7.segment"), None);
        assert_eq!(parse_name("99999999999999999999.segment"), None);
        assert_eq!(parse_name("lock"), None);
    }
}
