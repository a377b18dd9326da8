//! Memory of another process (the server under test), read from `/proc/{pid}`.

use anyhow::{anyhow, Context, Result};

/// Resident memory of `pid` in bytes: `VmRSS` of `/proc/{pid}/status`.
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_vm_rss(&text).ok_or_else(|| anyhow!("no VmRSS line in {path}"))
}

/// The `VmRSS:  1234 kB` line of a status file, in bytes.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Bytes `pid` has read through read(2) and its kind so far, page-cache hits included
/// (`rchar` of `/proc/{pid}/io`): at start-up, how much of the store the server read.
pub fn read_chars(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/io");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_rchar(&text).ok_or_else(|| anyhow!("no rchar line in {path}"))
}

/// The `rchar: 1234` line of an io file.
fn parse_rchar(io: &str) -> Option<u64> {
    let line = io.lines().find(|l| l.starts_with("rchar:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// This process's soft limit on open files ("Max open files" of `/proc/self/limits`).
pub fn open_files_limit() -> Result<u64> {
    let path = "/proc/self/limits";
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    parse_open_files(&text).ok_or_else(|| anyhow!("no \"Max open files\" line in {path}"))
}

/// The soft limit of the `Max open files` line (`unlimited` as `u64::MAX`).
fn parse_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        return Some(u64::MAX);
    }
    soft.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\tchatd\nVmHWM:\t  9000 kB\nVmRSS:\t  8192 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss(status), Some(8192 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn rchar_is_read() -> Result<()> {
        let io = "rchar: 4096\nwchar: 12\nsyscr: 3\nread_bytes: 0\n";
        assert_eq!(parse_rchar(io), Some(4096));
        assert_eq!(parse_rchar("wchar: 1\n"), None);
        assert!(read_chars(std::process::id())? > 0);
        Ok(())
    }

    #[test]
    fn open_files_soft_limit_is_parsed() {
        let limits = "Max processes  95000  95000  processes\nMax open files            20000                20000                files\n";
        assert_eq!(parse_open_files(limits), Some(20000));
        assert_eq!(
            parse_open_files("Max open files unlimited unlimited files\n"),
            Some(u64::MAX)
        );
    }

    #[test]
    fn own_limits_are_readable() -> Result<()> {
        assert!(open_files_limit()? > 0);
        Ok(())
    }

    #[test]
    fn own_rss_is_readable() -> Result<()> {
        assert!(rss_bytes(std::process::id())? > 0);
        Ok(())
    }
}
