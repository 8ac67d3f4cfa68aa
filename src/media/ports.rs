//! RTP port pairs (RTP on an even port, RTCP on the next, RFC 3550 §11) from the configured
//! range, handed out round-robin so a port just freed is not reused at once (late packets of
//! the previous call would land in the new one).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Mutex;

use super::engine::MediaError;

pub struct PortAllocator {
    lo: u16,
    hi: u16,
    next: Mutex<u16>,
}

/// A bound, non-blocking RTP/RTCP socket pair.
pub struct RtpSockets {
    pub rtp: UdpSocket,
    pub rtcp: UdpSocket,
    pub port: u16,
}

impl PortAllocator {
    pub fn new(lo: u16, hi: u16) -> PortAllocator {
        let lo = lo + lo % 2; // RTP on even ports
        PortAllocator {
            lo,
            hi,
            next: Mutex::new(lo),
        }
    }

    /// Binds the next free pair on `ip`; ports held by other programs are skipped.
    pub fn allocate(&self, ip: IpAddr) -> Result<RtpSockets, MediaError> {
        let pairs = (self.hi - self.lo + 1).div_ceil(2);
        let mut next = match self.next.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        for _ in 0..pairs {
            let port = *next;
            *next = if port.saturating_add(3) > self.hi {
                self.lo
            } else {
                port + 2
            };
            let Ok(rtp) = UdpSocket::bind(SocketAddr::new(ip, port)) else {
                continue;
            };
            let Ok(rtcp) = UdpSocket::bind(SocketAddr::new(ip, port + 1)) else {
                continue;
            };
            rtp.set_nonblocking(true)?;
            rtcp.set_nonblocking(true)?;
            return Ok(RtpSockets { rtp, rtcp, port });
        }
        Err(MediaError::PortsExhausted {
            lo: self.lo,
            hi: self.hi,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_even_distinct_and_skip_busy_ports() {
        let ip = IpAddr::from([127, 0, 0, 1]);
        // Find a free stretch by probing.
        let base = (0..200)
            .map(|i| 41000 + i * 10)
            .find(|&b| (b..b + 8).all(|p| UdpSocket::bind((ip, p)).is_ok()))
            .expect("a free port stretch");
        let squatter = UdpSocket::bind((ip, base + 2)).unwrap();
        let alloc = PortAllocator::new(base + 1, base + 7);
        let a = alloc.allocate(ip).unwrap();
        let b = alloc.allocate(ip).unwrap();
        assert_eq!(
            a.port,
            base + 4,
            "odd lower bound rounds up, busy pair skipped"
        );
        assert_eq!(b.port, base + 6);
        assert!(matches!(
            alloc.allocate(ip),
            Err(MediaError::PortsExhausted { .. })
        ));
        drop(a);
        drop(squatter);
        let c = alloc.allocate(ip).unwrap();
        assert!(
            c.port == base + 2 || c.port == base + 4,
            "freed ports come back round-robin"
        );
    }
}
