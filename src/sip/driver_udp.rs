//! SIP over UDP in batches: many datagrams per system call.
//!
//! Past capacity most of the SIP thread's time went to the kernel, one
//! system call (and one wake-up) per datagram: `recvmmsg` reads up to
//! [`RECV_BATCH`] waiting datagrams at once and `sendmmsg` sends all the
//! datagrams a turn of the driver produced. Both come from `nix` (already
//! in the tree through webrtc-util), which wraps the calls safely; tokio's
//! `try_io` keeps its readiness right around them.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::socket::{
    recvmmsg, sendmmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams read with one `recvmmsg` (as quinn-udp on Linux).
pub const RECV_BATCH: usize = 32;
/// Datagrams sent with one `sendmmsg` at most (the kernel's `UIO_MAXIOV`
/// is far above; this bounds the headers allocated for one call).
const SEND_BATCH: usize = 64;

/// One datagram read: its source, which buffer holds it and how long it
/// is, and when the kernel took it in (when [`stamp_arrivals`] was asked;
/// else when it was read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub from: SocketAddr,
    /// Index of its buffer: a datagram skipped before it (truncated, no
    /// source) leaves a buffer unused, so the `n`th read is not always in
    /// the `n`th buffer.
    pub index: usize,
    pub len: usize,
    pub arrived: Instant,
}

impl Received {
    /// Its bytes, in the buffers given to [`recv_batch`].
    pub fn bytes<'a>(&self, bufs: &'a [Vec<u8>]) -> &'a [u8] {
        &bufs[self.index][..self.len]
    }
}

/// Asks the kernel to stamp each datagram with when it arrived, so that
/// the time it waited in the socket's buffer counts in its age: under
/// load that buffer (4 MB) is where a new call waits longest.
pub fn stamp_arrivals(sock: &UdpSocket) -> io::Result<()> {
    setsockopt(sock.as_raw_fd(), sockopt::ReceiveTimestampns, &true)?;
    Ok(())
}

/// Reads up to `bufs.len()` waiting datagrams into `got` (cleared first),
/// each datagram in the buffer of its index. Waits until at least one is
/// there; an error is the socket's (e.g. an ICMP port unreachable
/// reported on Linux), to be skipped.
pub async fn recv_batch(sock: &UdpSocket, bufs: &mut [Vec<u8>], got: &mut Vec<Received>) -> io::Result<()> {
    loop {
        sock.readable().await?;
        got.clear();
        match sock.try_io(Interest::READABLE, || recv_now(sock, bufs, got)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}

fn recv_now(sock: &UdpSocket, bufs: &mut [Vec<u8>], got: &mut Vec<Received>) -> io::Result<()> {
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(bufs.len(), Some(nix::cmsg_space!(nix::sys::time::TimeSpec)));
    let (now, wall) = (Instant::now(), SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default());
    let slices: Vec<[IoSliceMut<'_>; 1]> = bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
    let read = recvmmsg(sock.as_raw_fd(), &mut headers, slices.iter(), MsgFlags::MSG_DONTWAIT, None)?;
    for (index, m) in read.enumerate() {
        // A datagram longer than the buffer (65 535 bytes) cannot be a
        // SIP message we read; one without a source is not for us.
        if m.flags.contains(MsgFlags::MSG_TRUNC) {
            continue;
        }
        let waited = m.cmsgs().find_map(|c| match c {
            ControlMessageOwned::ScmTimestampns(t) => {
                let at = Duration::new(u64::try_from(t.tv_sec()).unwrap_or(0), u32::try_from(t.tv_nsec()).unwrap_or(0));
                Some(wall.saturating_sub(at))
            }
            _ => None,
        });
        // A clock set back or a stamp from the future: it waited nothing.
        let arrived = now.checked_sub(waited.unwrap_or_default()).unwrap_or(now);
        if let Some(from) = m.address.as_ref().and_then(std_addr) {
            got.push(Received { from, index, len: m.bytes, arrived });
        }
    }
    Ok(())
}

fn std_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

/// Sends every datagram of `out` (destination, bytes), in order, in as
/// few system calls as the kernel allows; waits while the send buffer is
/// full. A datagram the kernel refuses outright (no route, too large) is
/// dropped, as one `send_to` would have lost it: UDP's senders retransmit.
pub async fn send_batch(sock: &UdpSocket, out: &[(SocketAddr, Vec<u8>)]) {
    let mut done = 0;
    while done < out.len() {
        let end = out.len().min(done + SEND_BATCH);
        match sock.try_io(Interest::WRITABLE, || send_now(sock, &out[done..end])) {
            Ok(n) => done += n.max(1),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if sock.writable().await.is_err() {
                    return;
                }
            }
            // The first datagram of the batch was refused: skip it.
            Err(_) => done += 1,
        }
    }
}

fn send_now(sock: &UdpSocket, out: &[(SocketAddr, Vec<u8>)]) -> io::Result<usize> {
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(out.len(), None);
    let slices: Vec<[IoSlice<'_>; 1]> = out.iter().map(|(_, b)| [IoSlice::new(b)]).collect();
    let addrs: Vec<Option<SockaddrStorage>> = out.iter().map(|(a, _)| Some(SockaddrStorage::from(*a))).collect();
    let sent = sendmmsg(sock.as_raw_fd(), &mut headers, slices.iter(), &addrs, [] as [ControlMessage<'_>; 0], MsgFlags::MSG_DONTWAIT)?;
    Ok(sent.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A burst of datagrams from two senders, sent in one batch and read
    /// back in batches: every one arrives whole, with its source, in order.
    #[tokio::test]
    async fn a_burst_is_sent_and_read_in_batches() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = server.local_addr().unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("[::1]:0").await.ok();
        let out: Vec<(SocketAddr, Vec<u8>)> = (0..100u32).map(|i| (to, format!("OPTIONS {i}").into_bytes())).collect();
        send_batch(&a, &out).await;
        let mut bufs = vec![vec![0u8; 65_535]; RECV_BATCH];
        let mut got = Vec::new();
        let mut seen = Vec::new();
        while seen.len() < 100 {
            recv_batch(&server, &mut bufs, &mut got).await.unwrap();
            assert!(got.len() <= RECV_BATCH);
            for r in &got {
                assert_eq!(r.from, a.local_addr().unwrap());
                seen.push(String::from_utf8(r.bytes(&bufs).to_vec()).unwrap());
            }
        }
        let want: Vec<String> = (0..100).map(|i| format!("OPTIONS {i}")).collect();
        assert_eq!(seen, want);
        // IPv6, where this machine has it: the source comes back as v6.
        if let (Some(b), Ok(server6)) = (b, UdpSocket::bind("[::1]:0").await) {
            send_batch(&b, &[(server6.local_addr().unwrap(), b"BYE".to_vec())]).await;
            recv_batch(&server6, &mut bufs, &mut got).await.unwrap();
            assert_eq!((got.len(), got[0].from, got[0].len), (1, b.local_addr().unwrap(), 3));
        }
    }

    /// With arrival stamps, a datagram that waited in the socket's buffer
    /// is read as old as it is.
    #[tokio::test]
    async fn a_datagram_that_waited_in_the_buffer_is_read_as_old() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        stamp_arrivals(&server).unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut bufs = vec![vec![0u8; 64]; 4];
        let mut got = Vec::new();
        // Linux turns stamping on for the whole stack from a work queue:
        // until it has run, a datagram is stamped when it is read (seen in
        // one run of five when this was the first socket to ask). So up to
        // three tries, each 60 ms in the buffer.
        let mut waits = Vec::new();
        for _ in 0..3 {
            let sent = Instant::now();
            send_batch(&a, &[(server.local_addr().unwrap(), b"INVITE".to_vec())]).await;
            std::thread::sleep(Duration::from_millis(60));
            recv_batch(&server, &mut bufs, &mut got).await.unwrap();
            assert!(got[0].arrived >= sent - Duration::from_millis(5), "arrived before it was sent");
            waits.push(Instant::now() - got[0].arrived);
            if waits.last().is_some_and(|w| *w >= Duration::from_millis(55)) {
                return;
            }
        }
        panic!("the time in the buffer was not counted: {waits:?}");
    }

    /// A datagram to an unreachable destination does not stop the rest.
    #[tokio::test]
    async fn a_refused_datagram_does_not_stop_the_batch() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // An IPv6 destination from an IPv4 socket is refused by the kernel.
        let out = vec![("[::1]:9".parse().unwrap(), b"lost".to_vec()), (server.local_addr().unwrap(), b"kept".to_vec())];
        send_batch(&a, &out).await;
        let mut bufs = vec![vec![0u8; 64]; 4];
        let mut got = Vec::new();
        recv_batch(&server, &mut bufs, &mut got).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].bytes(&bufs), b"kept");
    }

    /// A datagram too long for its buffer is skipped, and the one read
    /// after it still comes with its own bytes, not the skipped one's.
    #[tokio::test]
    async fn a_truncated_datagram_is_skipped_and_the_next_keeps_its_bytes() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = server.local_addr().unwrap();
        send_batch(&a, &[(to, b"far too long for eight".to_vec()), (to, b"ok".to_vec())]).await;
        let mut bufs = vec![vec![0u8; 8]; 4];
        let mut got = Vec::new();
        while got.is_empty() {
            recv_batch(&server, &mut bufs, &mut got).await.unwrap();
        }
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].bytes(&bufs), b"ok");
    }
}
