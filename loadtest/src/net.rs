//! Batched datagram I/O for the generator's media clock: `recvmmsg` with kernel receive
//! timestamps (`SO_TIMESTAMPNS`) and `sendmmsg` to many destinations in one call.
//!
//! Why batch: every caller of a worker shares one RTP socket (as SIPp does), so a 20 ms tick
//! with 2,500 callers reads and writes 2,500 datagrams; one syscall per 64 (read) or 1,024
//! (write) instead of one each. Why kernel timestamps: the arrival time of each packet is
//! what is measured, and the kernel's stamp does not depend on when the generator read it.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;

use crate::clock::{self, Nanos};

/// Binds a non-blocking UDP socket that stamps received datagrams, with large buffers (a
/// tick's worth of packets for thousands of calls must fit).
pub fn bind_udp(addr: SocketAddr, buffer_bytes: usize) -> io::Result<UdpSocket> {
    let sock = UdpSocket::bind(addr)?;
    sock.set_nonblocking(true)?;
    let fd = sock.as_raw_fd();
    let on: libc::c_int = 1;
    let size = buffer_bytes as libc::c_int;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from the pointers given.
    unsafe {
        let setopt = |level, name, value: &libc::c_int| {
            libc::setsockopt(
                fd,
                level,
                name,
                value as *const libc::c_int as *const libc::c_void,
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if setopt(libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, &on) != 0 {
            return Err(io::Error::last_os_error());
        }
        // FORCE works as root beyond net.core.rmem_max; otherwise the capped size applies.
        if setopt(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &size) != 0 {
            setopt(libc::SOL_SOCKET, libc::SO_RCVBUF, &size);
        }
        if setopt(libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &size) != 0 {
            setopt(libc::SOL_SOCKET, libc::SO_SNDBUF, &size);
        }
    }
    Ok(sock)
}

/// Binds an even port and the odd one above it (RTP and RTCP, RFC 3550 §11) on `ip`.
pub fn bind_rtp_pair(ip: IpAddr, buffer_bytes: usize) -> io::Result<(UdpSocket, UdpSocket)> {
    for _ in 0..200 {
        let rtp = bind_udp(SocketAddr::new(ip, 0), buffer_bytes)?;
        let port = rtp.local_addr()?.port();
        if port % 2 != 0 || port == u16::MAX {
            continue;
        }
        if let Ok(rtcp) = bind_udp(SocketAddr::new(ip, port + 1), 1 << 16) {
            return Ok((rtp, rtcp));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no free even/odd UDP port pair for RTP",
    ))
}

fn to_sockaddr(addr: SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    // SAFETY: sockaddr_storage is large enough and suitably aligned for both families.
    unsafe {
        match addr {
            SocketAddr::V4(a) => {
                let sin = out as *mut _ as *mut libc::sockaddr_in;
                (*sin).sin_family = libc::AF_INET as libc::sa_family_t;
                (*sin).sin_port = a.port().to_be();
                (*sin).sin_addr = libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                };
                size_of::<libc::sockaddr_in>() as libc::socklen_t
            }
            SocketAddr::V6(a) => {
                let sin6 = out as *mut _ as *mut libc::sockaddr_in6;
                (*sin6).sin6_family = libc::AF_INET6 as libc::sa_family_t;
                (*sin6).sin6_port = a.port().to_be();
                (*sin6).sin6_addr = libc::in6_addr {
                    s6_addr: a.ip().octets(),
                };
                (*sin6).sin6_flowinfo = 0;
                (*sin6).sin6_scope_id = a.scope_id();
                size_of::<libc::sockaddr_in6>() as libc::socklen_t
            }
        }
    }
}

fn from_sockaddr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    // SAFETY: the family field says which layout the kernel wrote.
    unsafe {
        match s.ss_family as libc::c_int {
            libc::AF_INET => {
                let sin = &*(s as *const _ as *const libc::sockaddr_in);
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 => {
                let sin6 = &*(s as *const _ as *const libc::sockaddr_in6);
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

const CMSG_SPACE: usize = 64;

/// Reusable buffers for one `recvmmsg` of up to `n` datagrams.
pub struct RecvBatch {
    bufs: Vec<u8>,
    size: usize,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    cmsgs: Vec<[u8; CMSG_SPACE]>,
    msgs: Vec<libc::mmsghdr>,
    len: usize,
}

// SAFETY: the raw pointers inside point into the batch's own vectors, rebuilt before each use.
unsafe impl Send for RecvBatch {}

/// One received datagram.
pub struct Datagram<'a> {
    pub data: &'a [u8],
    pub from: SocketAddr,
    /// Kernel receive time (CLOCK_REALTIME); the read time if the kernel gave none.
    pub at: Nanos,
}

impl RecvBatch {
    pub fn new(n: usize, size: usize) -> RecvBatch {
        RecvBatch {
            bufs: vec![0; n * size],
            size,
            // SAFETY: all-zero is a valid value of these plain C structs.
            addrs: (0..n).map(|_| unsafe { zeroed() }).collect(),
            iovs: (0..n)
                .map(|_| libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                })
                .collect(),
            cmsgs: vec![[0; CMSG_SPACE]; n],
            msgs: (0..n).map(|_| unsafe { zeroed() }).collect(),
            len: 0,
        }
    }

    /// Reads up to the batch size without blocking; returns how many arrived (0 when none).
    pub fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        let n = self.msgs.len();
        for i in 0..n {
            self.iovs[i].iov_base = self.bufs[i * self.size..].as_mut_ptr() as *mut libc::c_void;
            self.iovs[i].iov_len = self.size;
            let h = &mut self.msgs[i].msg_hdr;
            h.msg_name = &mut self.addrs[i] as *mut _ as *mut libc::c_void;
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = self.cmsgs[i].as_mut_ptr() as *mut libc::c_void;
            h.msg_controllen = CMSG_SPACE as _;
            h.msg_flags = 0;
            self.msgs[i].msg_len = 0;
        }
        // SAFETY: every pointer set above points into buffers owned by self, alive for the call.
        let r = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                self.msgs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            self.len = 0;
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(0),
                // ICMP port unreachable from an earlier send: not this read's problem.
                io::ErrorKind::ConnectionRefused => Ok(0),
                _ => Err(e),
            };
        }
        self.len = r as usize;
        Ok(self.len)
    }

    /// The `i`-th datagram of the last [`RecvBatch::recv`].
    pub fn get(&self, i: usize) -> Option<Datagram<'_>> {
        if i >= self.len {
            return None;
        }
        let m = &self.msgs[i];
        let from = from_sockaddr(&self.addrs[i])?;
        let len = (m.msg_len as usize).min(self.size);
        let data = &self.bufs[i * self.size..i * self.size + len];
        let mut at = None;
        // SAFETY: the kernel filled msg_control/msg_controllen; the CMSG macros walk it.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&m.msg_hdr);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                    let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                    at = Some(ts.tv_sec as Nanos * 1_000_000_000 + ts.tv_nsec as Nanos);
                }
                c = libc::CMSG_NXTHDR(&m.msg_hdr, c);
            }
        }
        Some(Datagram {
            data,
            from,
            at: at.unwrap_or_else(clock::now),
        })
    }
}

/// Datagrams to many destinations, sent with one `sendmmsg` per 1,024.
pub struct SendBatch {
    data: Vec<u8>,
    entries: Vec<(usize, usize, SocketAddr)>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

// SAFETY: as for RecvBatch, pointers are rebuilt before each send.
unsafe impl Send for SendBatch {}

const SEND_CHUNK: usize = 1024;

impl Default for SendBatch {
    fn default() -> Self {
        SendBatch::new()
    }
}

impl SendBatch {
    pub fn new() -> SendBatch {
        SendBatch {
            data: Vec::with_capacity(64 * 1024),
            entries: Vec::new(),
            addrs: Vec::new(),
            iovs: Vec::new(),
            msgs: Vec::new(),
        }
    }

    /// Appends one datagram; `fill` writes its bytes into the given buffer (appending).
    pub fn push_with(&mut self, dest: SocketAddr, fill: impl FnOnce(&mut Vec<u8>)) {
        let start = self.data.len();
        fill(&mut self.data);
        self.entries.push((start, self.data.len() - start, dest));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sends everything queued; returns how many datagrams the kernel refused.
    pub fn flush(&mut self, sock: &UdpSocket) -> usize {
        let mut failed = 0;
        let total = self.entries.len();
        let mut done = 0;
        while done < total {
            let n = (total - done).min(SEND_CHUNK);
            self.addrs.resize_with(n, || unsafe { zeroed() });
            self.iovs.resize_with(n, || libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            });
            self.msgs.resize_with(n, || unsafe { zeroed() });
            for k in 0..n {
                let (start, len, dest) = self.entries[done + k];
                let namelen = to_sockaddr(dest, &mut self.addrs[k]);
                self.iovs[k].iov_base = self.data[start..].as_mut_ptr() as *mut libc::c_void;
                self.iovs[k].iov_len = len;
                let h = &mut self.msgs[k].msg_hdr;
                h.msg_name = &mut self.addrs[k] as *mut _ as *mut libc::c_void;
                h.msg_namelen = namelen;
                h.msg_iov = &mut self.iovs[k];
                h.msg_iovlen = 1;
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
                h.msg_flags = 0;
            }
            let mut sent = 0;
            while sent < n {
                // SAFETY: the headers point into self.data/addrs/iovs, alive for the call.
                let r = unsafe {
                    libc::sendmmsg(
                        sock.as_raw_fd(),
                        self.msgs[sent..].as_mut_ptr(),
                        (n - sent) as libc::c_uint,
                        0,
                    )
                };
                if r <= 0 {
                    // The first message failed (e.g. ICMP error pending, buffer full): skip it.
                    failed += 1;
                    sent += 1;
                } else {
                    sent += r as usize;
                }
            }
            done += n;
        }
        self.data.clear();
        self.entries.clear();
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_goes_out_and_comes_back_stamped() {
        let lo = IpAddr::from([127, 0, 0, 1]);
        let a = bind_udp(SocketAddr::new(lo, 0), 1 << 20).unwrap();
        let b = bind_udp(SocketAddr::new(lo, 0), 1 << 20).unwrap();
        let to = b.local_addr().unwrap();
        let mut out = SendBatch::new();
        let before = clock::now();
        for i in 0..100u8 {
            out.push_with(to, |buf| buf.extend_from_slice(&[i; 40]));
        }
        assert_eq!(out.flush(&a), 0);
        let mut rx = RecvBatch::new(64, 2048);
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while got.len() < 100 && std::time::Instant::now() < deadline {
            let n = rx.recv(&b).unwrap();
            for i in 0..n {
                let d = rx.get(i).unwrap();
                assert_eq!(d.from, a.local_addr().unwrap());
                assert!(d.at >= before - 1_000_000 && d.at <= clock::now());
                got.push(d.data.to_vec());
            }
        }
        assert_eq!(got.len(), 100);
        assert!(got.iter().enumerate().all(|(i, d)| d == &vec![i as u8; 40]));
    }
}
