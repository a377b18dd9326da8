//! TCP acknowledgements sent as soon as a read returns, so that a client which leaves Nagle's
//! algorithm on never waits for the server's delayed ACK.
//!
//! Why: a client publishes at QoS 1 and gets its PUBACK and, on `user/{me}/ack`, a QoS 1 ack
//! that it acknowledges in turn with a 4-byte PUBACK. The server has nothing to send back for
//! that PUBACK, so Linux holds its TCP acknowledgement for the delayed-ACK timer (~40 ms). The
//! client's next PUBLISH is small too, and Nagle's algorithm keeps a small segment back while
//! an earlier one is unacknowledged: it waits for that timer. Captured on loopback, a client
//! without TCP_NODELAY sending every 25 ms had each PUBLISH held 20–43 ms, and acks came after
//! 23 ms at the median. A broker that answers with a PUBACK alone (Mosquitto) never gets a
//! PUBACK back, so it never meets this.
//!
//! Linux's `TCP_QUICKACK` makes the kernel acknowledge what is pending now and leaves its
//! "interactive" mode, in which it delays ACKs hoping to piggyback them on a reply. The kernel
//! re-enters that mode by itself, so the option is set again after every read that returned
//! data: one `setsockopt` per read, which is cheap next to the read itself. Elsewhere it is a
//! no-op.

use tokio::net::TcpStream;

/// The socket of one client connection, whose received data is acknowledged at once.
#[derive(Clone, Copy, Debug)]
pub struct QuickAck {
    #[cfg(target_os = "linux")]
    fd: std::os::fd::RawFd,
}

impl QuickAck {
    /// For the socket of `stream`. The caller keeps `stream` (or what wraps it) alive for as
    /// long as it uses the result: both live in the same transport.
    pub fn of(stream: &TcpStream) -> QuickAck {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            QuickAck {
                fd: stream.as_raw_fd(),
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = stream;
            QuickAck {}
        }
    }

    /// Acknowledges what was received now, instead of waiting to piggyback the ACK on a reply.
    pub fn now(self) {
        #[cfg(target_os = "linux")]
        {
            let on: libc::c_int = 1;
            // SAFETY: `fd` is the open socket of the stream this value was made from, which
            // outlives it (see `of`); the option value is a valid c_int of the given size.
            // Failure only means a delayed ACK, so it is ignored.
            unsafe {
                libc::setsockopt(
                    self.fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_QUICKACK,
                    (&on as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Whether the socket acknowledges at once (`TCP_QUICKACK` reads back as "not in the
    /// interactive mode that delays ACKs").
    fn quick(stream: &TcpStream) -> bool {
        use std::os::fd::AsRawFd;
        let mut value: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: a valid open socket and an out value of the size given.
        let rc = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "getsockopt: {}", std::io::Error::last_os_error());
        value == 1
    }

    #[tokio::test]
    async fn now_leaves_the_delayed_ack_mode() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        // What the kernel does by itself once a connection looks interactive.
        use std::os::fd::AsRawFd;
        let off: libc::c_int = 0;
        // SAFETY: a valid open socket and an option value of the size given.
        unsafe {
            libc::setsockopt(
                server.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&off as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        assert!(!quick(&server));
        QuickAck::of(&server).now();
        assert!(quick(&server));
        drop(client);
    }
}
