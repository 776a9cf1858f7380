//! Runs one fuzz target on files, without AFL: to reproduce a finding or
//! check a corpus. `replay TARGET FILE...` (TARGET: frame, method,
//! properties, table, connection); a directory stands for its files.
use std::path::{Path, PathBuf};

fn files(path: &Path) -> Vec<PathBuf> {
    if path.is_dir() {
        let mut out: Vec<PathBuf> = std::fs::read_dir(path)
            .expect("read directory")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        out.sort();
        out
    } else {
        vec![path.to_path_buf()]
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let target: fn(&[u8]) = match args.next().as_deref() {
        Some("frame") => warren_fuzz::frame,
        Some("method") => warren_fuzz::method,
        Some("properties") => warren_fuzz::properties,
        Some("table") => warren_fuzz::table,
        Some("connection") => warren_fuzz::connection,
        _ => {
            eprintln!("usage: replay frame|method|properties|table|connection FILE...");
            std::process::exit(2);
        }
    };
    let mut count = 0;
    for arg in args {
        for file in files(Path::new(&arg)) {
            let data = std::fs::read(&file).expect("read input");
            eprintln!("{}", file.display());
            target(&data);
            count += 1;
        }
    }
    eprintln!("{count} inputs, no failure");
}
