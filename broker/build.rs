//! Embeds the web client's bundle (`web/dist`, committed) in the binary, so `cargo install`
//! needs no Node.js: every file directly in that folder becomes `(name, bytes)` in
//! `$OUT_DIR/web_files.rs`. Source maps are left out. A missing folder embeds nothing (the
//! server then says the web client was not built).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let dist = manifest.join("../web/dist");
    println!("cargo:rerun-if-changed={}", dist.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dist)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && servable(p))
                .collect()
        })
        .unwrap_or_default();
    // Sorted, so the generated code (and the binary) does not depend on directory order.
    files.sort();
    let mut code = String::from("&[\n");
    for path in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let absolute = path.canonicalize().unwrap_or_else(|_| path.clone());
        let _ = writeln!(
            code,
            "    ({name:?}, include_bytes!({absolute:?}) as &[u8]),"
        );
    }
    code.push(']');
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    std::fs::write(out.join("web_files.rs"), code).expect("write web_files.rs");
}

/// A file name the server may serve: no hidden files, no source maps.
fn servable(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    !name.starts_with('.') && !name.ends_with(".map")
}
