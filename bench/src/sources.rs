//! Client source addresses spread over 127.0.0.0/8, so that many connections to one server port
//! never run out of ephemeral ports on one address.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{bail, Result};

/// First source address: 127.1.0.1 (127.0.0.1 stays free for everything else).
const FIRST: u32 = u32::from_be_bytes([127, 1, 0, 1]);
/// Last usable address of 127.0.0.0/8.
const LAST: u32 = u32::from_be_bytes([127, 255, 255, 254]);

/// A pool of `count` loopback source addresses used round-robin.
#[derive(Debug, Clone, Copy)]
pub struct Sources {
    count: u32,
}

impl Sources {
    /// `count` addresses from 127.1.0.1 on.
    pub fn new(count: u32) -> Result<Self> {
        if count == 0 || count > LAST - FIRST + 1 {
            bail!("source address count must be 1 to {}", LAST - FIRST + 1);
        }
        Ok(Sources { count })
    }

    /// The address client `i` binds to before connecting (port 0: the kernel picks one).
    pub fn for_client(&self, i: usize) -> SocketAddr {
        let n = FIRST + (i as u64 % self.count as u64) as u32;
        SocketAddr::from((Ipv4Addr::from(n), 0))
    }

    /// How many addresses are in use.
    pub fn count(&self) -> u32 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_cycle_through_the_addresses() -> Result<()> {
        let s = Sources::new(300)?;
        assert_eq!(s.for_client(0), "127.1.0.1:0".parse()?);
        assert_eq!(s.for_client(255), "127.1.1.0:0".parse()?);
        assert_eq!(s.for_client(299), "127.1.1.44:0".parse()?);
        assert_eq!(s.for_client(300), "127.1.0.1:0".parse()?);
        assert!(Sources::new(0).is_err());
        Ok(())
    }
}
