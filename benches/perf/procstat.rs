//! Process statistics from /proc: CPU time (utime + stime) and resident
//! memory (VmRSS, VmHWM) of the broker and of this benchmark process.

use std::sync::OnceLock;

/// Clock ticks per second, asked of `getconf CLK_TCK` once (100 if that fails).
pub fn clk_tck() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// User plus system CPU seconds of a process (`None` for this process), or
/// `None` when it cannot be read.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ... utime is field 14, stime field 15 (1-based,
    // counting pid and comm), i.e. indexes 11 and 12 here.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clk_tck())
}

/// Resident memory of a process in kB: (VmRSS, VmHWM).
pub fn memory_kb(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        line[name.len()..].split_whitespace().next()?.parse().ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Whether a process exists.
pub fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Parent PID and CPU seconds of one process, from /proc/PID/stat.
fn ppid_and_cpu(pid: u32) -> Option<(u32, f64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state, ppid, … (ppid is index 1 here).
    let ppid: u32 = fields.get(1)?.parse().ok()?;
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((ppid, (utime + stime) / clk_tck()))
}

/// `pid` and all its descendants (one scan of /proc per call).
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            if let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok())
                && let Some((pp, _)) = ppid_and_cpu(p)
            {
                parent_of.push((p, pp));
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    // Bounded: each process is added at most once.
    while i < tree.len() && tree.len() <= parent_of.len() + 1 {
        let parent = tree[i];
        for &(p, pp) in &parent_of {
            if pp == parent && !tree.contains(&p) {
                tree.push(p);
            }
        }
        i += 1;
    }
    tree
}

/// Resident memory of a process tree.
#[derive(Debug, Clone, Copy, Default)]
pub struct TreeMem {
    /// Sum of VmRSS over the tree, kB.
    pub sum_kb: u64,
    /// The largest single process: (pid, VmRSS kB, VmHWM kB).
    pub main_pid: u32,
    pub main_kb: u64,
    pub main_hwm_kb: u64,
    pub processes: usize,
}

pub fn tree_memory(pid: u32) -> TreeMem {
    let mut m = TreeMem::default();
    for p in process_tree(pid) {
        if let Some((rss, hwm)) = memory_kb(p) {
            m.sum_kb += rss;
            m.processes += 1;
            if rss >= m.main_kb {
                m.main_pid = p;
                m.main_kb = rss;
                m.main_hwm_kb = hwm;
            }
        }
    }
    m
}

/// CPU seconds used so far by the living processes of a tree.
pub fn tree_cpu_seconds(pid: u32) -> f64 {
    process_tree(pid)
        .into_iter()
        .filter_map(|p| ppid_and_cpu(p).map(|(_, c)| c))
        .sum()
}

/// Bytes allocated on disk (st_blocks × 512) to all regular files under
/// `path` (0 if it does not exist).
pub fn disk_usage(path: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    let mut visited = 0usize;
    while let Some(p) = stack.pop() {
        visited += 1;
        if visited > 1_000_000 {
            break;
        }
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        } else if meta.is_file() {
            total += std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
        }
    }
    total
}
