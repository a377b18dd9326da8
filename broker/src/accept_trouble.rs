//! What an accept loop does while accepting fails (out of file descriptors, mostly): one warning
//! when an episode starts and one when it ends, never one per retry. Out of descriptors, the
//! loop gives up a spare descriptor for a moment to accept a waiting client and close it at once,
//! so clients past the limit are refused instead of waiting in the kernel's backlog.

use std::fs::File;
use std::io;
use std::time::Instant;

use tracing::warn;

/// What the accept loop should do after a failed accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The spare descriptor is closed: accept one waiting client, close it, then call
    /// [`AcceptTrouble::refused`].
    Refuse,
    /// Wait a little before accepting again.
    BackOff,
}

/// One listener's accept failures since accepting last worked.
pub struct AcceptTrouble {
    listener: &'static str,
    since: Option<Instant>,
    failures: u64,
    refused: u64,
    spare: Option<File>,
}

impl AcceptTrouble {
    /// No trouble yet; holds a spare descriptor for refusing clients at the descriptor limit.
    pub fn new(listener: &'static str) -> AcceptTrouble {
        AcceptTrouble {
            listener,
            since: None,
            failures: 0,
            refused: 0,
            spare: open_spare(),
        }
    }

    /// Accepting failed with `e`. Warns when this starts an episode.
    pub fn failed(&mut self, e: &io::Error) -> Next {
        self.failures += 1;
        if self.since.is_none() {
            self.since = Some(Instant::now());
            let what = if out_of_descriptors(e) {
                "; clients are refused until descriptors are free (see limits.max_connections \
                 and the open-files limit)"
            } else {
                ""
            };
            warn!(listener = self.listener, "accept failed: {e}{what}");
        }
        if out_of_descriptors(e) && self.spare.take().is_some() {
            Next::Refuse
        } else {
            Next::BackOff
        }
    }

    /// A waiting client was accepted and closed; takes the spare descriptor back.
    pub fn refused(&mut self) {
        self.refused += 1;
        self.spare = open_spare();
    }

    /// Accepting works (again): warns once how the episode went.
    pub fn recovered(&mut self) {
        if let Some(since) = self.since.take() {
            warn!(
                listener = self.listener,
                "accepting again after {:.1} s: {} failed accepts, {} clients refused",
                since.elapsed().as_secs_f64(),
                self.failures,
                self.refused
            );
            self.failures = 0;
            self.refused = 0;
        }
        if self.spare.is_none() {
            self.spare = open_spare();
        }
    }

    /// True while accepting fails.
    #[cfg(test)]
    fn in_episode(&self) -> bool {
        self.since.is_some()
    }
}

/// EMFILE or ENFILE: the process or the system has no descriptor left.
fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

fn open_spare() -> Option<File> {
    File::open("/dev/null").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_descriptors_refuses_while_the_spare_lasts() {
        let mut trouble = AcceptTrouble::new("mqtt");
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        assert_eq!(trouble.failed(&emfile), Next::Refuse);
        assert!(trouble.in_episode());
        // Without the spare back, the loop can only wait.
        assert_eq!(trouble.failed(&emfile), Next::BackOff);
        trouble.refused();
        assert_eq!(trouble.failed(&emfile), Next::Refuse);
        trouble.refused();
        assert_eq!(trouble.failures, 3);
        trouble.recovered();
        assert!(!trouble.in_episode());
        assert_eq!((trouble.failures, trouble.refused), (0, 0));
    }

    #[test]
    fn other_errors_back_off() {
        let mut trouble = AcceptTrouble::new("mqtt");
        let other = io::Error::from_raw_os_error(libc::ENOBUFS);
        assert_eq!(trouble.failed(&other), Next::BackOff);
        assert_eq!(trouble.failed(&other), Next::BackOff);
        assert!(trouble.spare.is_some());
        trouble.recovered();
        assert!(!trouble.in_episode());
    }
}
