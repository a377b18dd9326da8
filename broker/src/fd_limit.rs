//! The open-files limit against `limits.max_connections` and `limits.http_max_connections`:
//! every connection holds a descriptor, and past the limit accepting fails. At start chatd
//! raises its soft limit to the hard one and warns once when the two caps together still exceed
//! what the limit leaves room for. The HTTP listener never holds more than its own cap, so HTTP
//! clients cannot take the descriptors MQTT needs.

use std::io;

use tracing::{info, warn};

/// A descriptor count, as the kernel's limits are expressed.
pub type Rlim = libc::rlim_t;

/// Descriptors kept for everything but client sockets (chatd idles with ~15): the store's
/// files (and up to `chatd_kv::MAX_HELD_FILES` more held to free deleted ones gradually), the
/// listeners, outgoing HTTP and Redis connections, files opened by media and push.
pub const RESERVED_FDS: Rlim = 64 + chatd_kv::MAX_HELD_FILES as Rlim;

/// Connections an open-files limit of `limit` leaves room for.
pub fn connections_allowed(limit: Rlim) -> Rlim {
    limit.saturating_sub(RESERVED_FDS)
}

/// The warning for `max_connections` MQTT plus `http_connections` HTTP connections above what
/// the open-files limit `limit` allows, if they are.
pub fn shortfall(max_connections: usize, http_connections: usize, limit: Rlim) -> Option<String> {
    let allowed = connections_allowed(limit);
    let wanted = (max_connections as Rlim).saturating_add(http_connections as Rlim);
    (wanted > allowed).then(|| {
        format!(
            "limits.max_connections is {max_connections} and limits.http_max_connections is \
             {http_connections}, but the open-files limit (RLIMIT_NOFILE) is {limit}, which \
             leaves room for about {allowed} connections: MQTT clients past that are refused. \
             Raise the limit (`ulimit -n`, systemd `LimitNOFILE=`) or lower \
             limits.max_connections"
        )
    })
}

/// The soft limit to ask for: the hard limit, or the kernel's per-process maximum `nr_open`
/// when the hard limit is unlimited; never less than `soft`.
fn wanted(soft: Rlim, hard: Rlim, nr_open: Option<Rlim>) -> Rlim {
    let ceiling = if hard == libc::RLIM_INFINITY {
        nr_open.unwrap_or(soft)
    } else {
        hard
    };
    ceiling.max(soft)
}

/// Raises the soft open-files limit as far as allowed and warns once when `max_connections`
/// MQTT plus `http_connections` HTTP connections exceed what the limit then allows.
pub fn check(max_connections: usize, http_connections: usize) {
    match raise() {
        Ok(limit) => {
            if let Some(warning) = shortfall(max_connections, http_connections, limit) {
                warn!("{warning}");
            }
        }
        Err(e) => warn!("cannot read or raise the open-files limit: {e}"),
    }
}

/// Raises the soft limit towards [`wanted`]; returns the soft limit in force.
fn raise() -> io::Result<Rlim> {
    let mut limits = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limits) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let (soft, hard) = (limits.rlim_cur, limits.rlim_max);
    let target = wanted(soft, hard, nr_open());
    if target == soft {
        return Ok(soft);
    }
    limits.rlim_cur = target;
    // SAFETY: setrlimit only reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limits) } != 0 {
        let e = io::Error::last_os_error();
        warn!("cannot raise the open-files limit from {soft} to {target}: {e}");
        return Ok(soft);
    }
    info!("open-files limit raised from {soft} to {target}");
    Ok(target)
}

/// The kernel's most descriptors per process (`/proc/sys/fs/nr_open`), where readable.
fn nr_open() -> Option<Rlim> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_warning_when_the_limit_leaves_room() {
        assert_eq!(shortfall(1_000, 0, 20_000), None);
        assert_eq!(shortfall(19_680, 0, 20_000), None);
        assert!(shortfall(19_681, 0, 20_000).is_some());
        assert_eq!(shortfall(15_680, 4_000, 20_000), None);
        assert!(shortfall(15_681, 4_000, 20_000).is_some());
        assert_eq!(shortfall(1_000, 4_096, libc::RLIM_INFINITY), None);
    }

    #[test]
    fn the_warning_names_both_numbers() {
        let warning = shortfall(100_000, 4_096, 20_000).unwrap_or_default();
        assert!(warning.contains("100000"), "{warning}");
        assert!(warning.contains("4096"), "{warning}");
        assert!(warning.contains("20000"), "{warning}");
        assert!(warning.contains("19680"), "{warning}");
        assert!(
            shortfall(10, 0, 64).is_some(),
            "a limit below the reserve allows nothing"
        );
    }

    #[test]
    fn asks_for_the_hard_limit_or_nr_open() {
        assert_eq!(wanted(1_024, 20_000, Some(1 << 20)), 20_000);
        assert_eq!(wanted(20_000, 20_000, None), 20_000);
        let unlimited = libc::RLIM_INFINITY;
        assert_eq!(wanted(1_024, unlimited, Some(1 << 20)), 1 << 20);
        assert_eq!(wanted(1_024, unlimited, None), 1_024);
        assert_eq!(wanted(4_096, unlimited, Some(1_024)), 4_096);
    }

    #[test]
    fn the_limit_in_force_is_at_least_the_soft_limit() {
        let limit = raise().ok();
        assert!(limit.is_some_and(|l| l > RESERVED_FDS));
    }
}
