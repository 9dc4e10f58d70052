//! The sender/receiver: one [`Probe`] sent from one namespace, received (or
//! not) in another, with real sockets opened on threads that `setns(2)`
//! into each namespace.
//!
//! * UDP: the receiver binds the destination address and port and, for a
//!   probe with `reply`, answers the source it saw; the sender's socket is
//!   connected, so an ICMP error (a `reject`, a closed port) comes back to
//!   it as an error.
//! * TCP: the receiver listens and accepts; the sender connects (a reset or
//!   an ICMP error is a refusal, no answer a timeout), sends a token, and
//!   with `reply` waits for the receiver's answer on that connection.
//!   "Delivered" needs the handshake, so both directions.
//! * ICMP/ICMPv6 echo: raw sockets; the receiver reads the echo request
//!   carrying the probe's token (the kernel of the destination answers it
//!   by itself), the sender the echo reply or an ICMP error.
//! * A destination port a host service already holds (dnsmasq's 53 and 67
//!   on the gateway): the receiver cannot bind it, so the sender speaks the
//!   service's protocol instead — a DNS query (udp) or a connection (tcp)
//!   to 53, a DHCPINFORM to 67 (answered to port 68) — and an answer is
//!   [`Arrival::Answered`] (the source the service saw is not observable).
//!
//! Each wait is bounded by the probe's timeout; a dropped packet costs one
//! timeout, a delivered one returns as soon as it arrives. Probes must run
//! one at a time per lab (ICMP errors are matched by type, not by flow).

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::socket::{
    self, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn, SockaddrIn6,
    SockaddrStorage,
};
use nix::sys::time::TimeVal;
use serde::{Deserialize, Serialize};

use super::ns::NsHandle;

/// Layer 4 of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum L4 {
    /// ICMP echo (ICMPv6 echo for an IPv6 destination).
    Icmp,
    Udp,
    Tcp,
}

/// One packet (connection) to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    pub dst: IpAddr,
    pub proto: L4,
    /// Source port to bind (none: the kernel's choice).
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    /// Also check the answer comes back (the receiver answers the source it
    /// saw: conntrack's reply direction, de-NATed).
    pub reply: bool,
}

/// What happened to a probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "arrival", rename_all = "lowercase")]
pub enum Arrival {
    /// The receiver in namespace `at` got it from `src`/`sport`; `replied`:
    /// whether its answer reached the sender (probes with `reply`).
    Delivered {
        at: String,
        src: IpAddr,
        sport: Option<u16>,
        replied: Option<bool>,
    },
    /// A host service (dnsmasq) holding the port answered.
    Answered { at: String, service: String },
    /// The sender got an ICMP error or a TCP reset.
    Refused { error: String },
    /// Nothing came back within the timeout (dropped).
    Timeout,
}

static SEQ: AtomicU64 = AtomicU64::new(1);

fn token() -> Vec<u8> {
    format!(
        "virtnet-probe-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
    .into_bytes()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn unspecified(v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    }
}

/// What the receiver reports once bound.
enum Ready {
    Listening,
    /// The port is held by a service of the destination namespace.
    InUse,
    Failed(String),
}

/// Sends `p` from namespace `from` to the receiver in namespace `to`.
pub fn send(
    from: &NsHandle,
    to: &NsHandle,
    p: &Probe,
    timeout: Duration,
) -> Result<Arrival, String> {
    if p.proto != L4::Icmp && p.dport.is_none() {
        return Err(format!(
            "{:?} probe to {} without a destination port",
            p.proto, p.dst
        ));
    }
    let tok = token();
    let got = Flags::default();
    let (ready_tx, ready_rx) = mpsc::channel::<Ready>();
    std::thread::scope(|s| {
        let recv = s.spawn(|| {
            to.run(|| receive(p, &tok, timeout, &ready_tx, &got))
                .and_then(|r| r)
        });
        let ready = ready_rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| Ready::Failed("receiver never became ready".into()));
        let sent = match ready {
            Ready::Failed(e) => Err(e),
            Ready::InUse => from.run(|| service(p, timeout)).and_then(|r| r).map(|a| {
                Some(match a {
                    Served::Answered(service) => Arrival::Answered {
                        at: to.name.clone(),
                        service,
                    },
                    Served::Refused(error) => Arrival::Refused { error },
                    Served::Nothing => Arrival::Timeout,
                })
            }),
            Ready::Listening => from
                .run(|| sender(p, &tok, timeout, &got))
                .and_then(|r| r)
                .map(|e| e.map(|error| Arrival::Refused { error })),
        };
        let received = recv
            .join()
            .map_err(|_| "receiver thread panicked".to_string())??;
        let sent = sent?;
        Ok(match (received, sent) {
            (Some((src, sport)), _) => Arrival::Delivered {
                at: to.name.clone(),
                src,
                sport,
                replied: p.reply.then(|| got.answered.load(Ordering::SeqCst)),
            },
            (None, Some(a)) => a,
            (None, None) => Arrival::Timeout,
        })
    })
}

/// What the two sides of one probe tell each other.
#[derive(Default)]
struct Flags {
    /// The receiver has the probe.
    arrived: AtomicBool,
    /// The sender has the receiver's answer.
    answered: AtomicBool,
}

// ----------------------------------------------------------------------
// receiver

type Seen = Option<(IpAddr, Option<u16>)>;

fn receive(
    p: &Probe,
    tok: &[u8],
    timeout: Duration,
    ready: &mpsc::Sender<Ready>,
    got: &Flags,
) -> Result<Seen, String> {
    let v4 = p.dst.is_ipv4();
    let deadline = Instant::now() + timeout;
    let seen = match p.proto {
        L4::Udp => {
            let port = p.dport.unwrap_or(0);
            let sock = match bind_dst(p, |a| UdpSocket::bind((a, port))) {
                Ok(s) => s,
                Err(e) if e.kind() == ErrorKind::AddrInUse => {
                    let _ = ready.send(Ready::InUse);
                    return Ok(None);
                }
                Err(e) => {
                    let _ = ready.send(Ready::Failed(format!("udp bind {port}: {e}")));
                    return Ok(None);
                }
            };
            let _ = ready.send(Ready::Listening);
            let mut buf = [0u8; 2048];
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break None;
                }
                sock.set_read_timeout(Some(left))
                    .map_err(|e| e.to_string())?;
                match sock.recv_from(&mut buf) {
                    Ok((n, peer)) if contains(&buf[..n], tok) => {
                        got.arrived.store(true, Ordering::SeqCst);
                        if p.reply {
                            let mut answer = b"answer-".to_vec();
                            answer.extend_from_slice(tok);
                            let _ = sock.send_to(&answer, peer);
                        }
                        break Some((peer.ip(), Some(peer.port())));
                    }
                    Ok(_) => continue,
                    Err(_) => break None,
                }
            }
        }
        L4::Tcp => {
            let port = p.dport.unwrap_or(0);
            let l = match bind_dst(p, |a| TcpListener::bind((a, port))) {
                Ok(l) => l,
                Err(e) if e.kind() == ErrorKind::AddrInUse => {
                    let _ = ready.send(Ready::InUse);
                    return Ok(None);
                }
                Err(e) => {
                    let _ = ready.send(Ready::Failed(format!("tcp listen {port}: {e}")));
                    return Ok(None);
                }
            };
            l.set_nonblocking(true).map_err(|e| e.to_string())?;
            let _ = ready.send(Ready::Listening);
            loop {
                if Instant::now() >= deadline {
                    break None;
                }
                match l.accept() {
                    Ok((mut c, peer)) => {
                        got.arrived.store(true, Ordering::SeqCst);
                        c.set_nonblocking(false).map_err(|e| e.to_string())?;
                        let _ = c.set_read_timeout(Some(timeout));
                        let mut buf = vec![0u8; tok.len()];
                        if c.read_exact(&mut buf).is_ok() && buf == tok && p.reply {
                            let _ = c.write_all(b"answer");
                        }
                        break Some((peer.ip(), Some(peer.port())));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(e) => return Err(format!("accept: {e}")),
                }
            }
        }
        L4::Icmp => {
            let fd = raw_icmp(v4)?;
            let _ = ready.send(Ready::Listening);
            let mut buf = [0u8; 2048];
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break None;
                }
                set_rcvtimeo(&fd, left)?;
                let Ok((n, from)) = socket::recvfrom::<SockaddrStorage>(fd.as_raw_fd(), &mut buf)
                else {
                    break None;
                };
                let pkt = &buf[..n];
                let (icmp, src) = if v4 {
                    let ihl = usize::from(pkt.first().copied().unwrap_or(0) & 0x0f) * 4;
                    if pkt.len() < ihl + 8 || ihl < 20 {
                        continue;
                    }
                    let s = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
                    (&pkt[ihl..], IpAddr::V4(s))
                } else {
                    let Some(s) = from.and_then(|a| a.as_sockaddr_in6().map(|a| a.ip())) else {
                        continue;
                    };
                    (pkt, IpAddr::V6(s))
                };
                let echo_request = if v4 { 8 } else { 128 };
                if icmp.first() == Some(&echo_request) && contains(icmp, tok) {
                    got.arrived.store(true, Ordering::SeqCst);
                    break Some((src, None));
                }
            }
        }
    };
    Ok(seen)
}

// ----------------------------------------------------------------------
// sender

fn raw_icmp(v4: bool) -> Result<OwnedFd, String> {
    let (fam, proto) = if v4 {
        (AddressFamily::Inet, SockProtocol::Icmp)
    } else {
        (AddressFamily::Inet6, SockProtocol::IcmpV6)
    };
    socket::socket(fam, SockType::Raw, SockFlag::SOCK_CLOEXEC, proto)
        .map_err(|e| format!("raw icmp socket: {e}"))
}

fn set_rcvtimeo(fd: &OwnedFd, d: Duration) -> Result<(), String> {
    let d = d.max(Duration::from_millis(1));
    socket::setsockopt(
        fd,
        socket::sockopt::ReceiveTimeout,
        &TimeVal::from(libc_timeval(d)),
    )
    .map_err(|e| format!("SO_RCVTIMEO: {e}"))
}

fn libc_timeval(d: Duration) -> libc::timeval {
    libc::timeval {
        tv_sec: d.as_secs() as libc::time_t,
        tv_usec: d.subsec_micros() as libc::suseconds_t,
    }
}

fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in b.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Waits for an answer on `sock` in slices, stopping early once the
/// receiver has the probe and no answer is wanted. `Ok(Some(err))`: the
/// probe was refused; `Ok(None)`: nothing (or the wanted answer, recorded
/// in `got.answered`).
fn sender(p: &Probe, tok: &[u8], timeout: Duration, got: &Flags) -> Result<Option<String>, String> {
    let v4 = p.dst.is_ipv4();
    let deadline = Instant::now() + timeout;
    let slice = Duration::from_millis(50);
    // Delivered and no answer wanted: done. Answer wanted: keep waiting.
    let done =
        |answered: bool| -> bool { answered || (!p.reply && got.arrived.load(Ordering::SeqCst)) };
    match p.proto {
        L4::Udp => {
            let sock = UdpSocket::bind((unspecified(v4), p.sport.unwrap_or(0)))
                .map_err(|e| format!("udp bind: {e}"))?;
            let dst = SocketAddr::new(p.dst, p.dport.unwrap_or(0));
            sock.connect(dst)
                .map_err(|e| format!("udp connect {dst}: {e}"))?;
            if let Err(e) = sock.send(tok) {
                return Ok(Some(format!("send: {e}")));
            }
            let mut buf = [0u8; 2048];
            while Instant::now() < deadline {
                sock.set_read_timeout(Some(slice))
                    .map_err(|e| e.to_string())?;
                match sock.recv(&mut buf) {
                    Ok(n) if contains(&buf[..n], tok) => {
                        answered(got);
                        return Ok(None);
                    }
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        if done(false) {
                            return Ok(None);
                        }
                    }
                    Err(e) => return Ok(Some(e.to_string())),
                }
            }
            Ok(None)
        }
        L4::Tcp => {
            let fam = if v4 {
                AddressFamily::Inet
            } else {
                AddressFamily::Inet6
            };
            let fd = socket::socket(fam, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
                .map_err(|e| format!("tcp socket: {e}"))?;
            socket::setsockopt(&fd, socket::sockopt::ReuseAddr, &true)
                .map_err(|e| format!("SO_REUSEADDR: {e}"))?;
            if let Some(sp) = p.sport {
                bind_any(&fd, v4, sp)?;
            }
            socket::setsockopt(
                &fd,
                socket::sockopt::SendTimeout,
                &TimeVal::from(libc_timeval(timeout)),
            )
            .map_err(|e| format!("SO_SNDTIMEO: {e}"))?;
            let dst = SocketAddr::new(p.dst, p.dport.unwrap_or(0));
            let r = match dst {
                SocketAddr::V4(a) => socket::connect(fd.as_raw_fd(), &SockaddrIn::from(a)),
                SocketAddr::V6(a) => socket::connect(fd.as_raw_fd(), &SockaddrIn6::from(a)),
            };
            match r {
                Ok(()) => {}
                Err(nix::errno::Errno::EINPROGRESS | nix::errno::Errno::EAGAIN) => return Ok(None),
                Err(e) => return Ok(Some(format!("connect: {}", e.desc()))),
            }
            let mut c = TcpStream::from(fd);
            let _ = c.write_all(tok);
            if p.reply {
                let _ = c.set_read_timeout(Some(
                    deadline
                        .saturating_duration_since(Instant::now())
                        .max(slice),
                ));
                let mut buf = [0u8; 6];
                if c.read_exact(&mut buf).is_ok() && &buf == b"answer" {
                    answered(got);
                }
            } else {
                // Let the receiver read the token before the connection closes.
                while Instant::now() < deadline && !done(false) {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            Ok(None)
        }
        L4::Icmp => {
            let fd = raw_icmp(v4)?;
            let id = (SEQ.fetch_add(1, Ordering::Relaxed) & 0xffff) as u16;
            let mut pkt = vec![if v4 { 8 } else { 128 }, 0, 0, 0];
            pkt.extend_from_slice(&id.to_be_bytes());
            pkt.extend_from_slice(&1u16.to_be_bytes());
            pkt.extend_from_slice(tok);
            if v4 {
                let c = checksum(&pkt);
                pkt[2..4].copy_from_slice(&c.to_be_bytes());
            }
            let sent = match p.dst {
                IpAddr::V4(a) => socket::sendto(
                    fd.as_raw_fd(),
                    &pkt,
                    &SockaddrIn::from(std::net::SocketAddrV4::new(a, 0)),
                    MsgFlags::empty(),
                ),
                IpAddr::V6(a) => socket::sendto(
                    fd.as_raw_fd(),
                    &pkt,
                    &SockaddrIn6::from(std::net::SocketAddrV6::new(a, 0, 0, 0)),
                    MsgFlags::empty(),
                ),
            };
            if let Err(e) = sent {
                return Ok(Some(format!("send: {}", e.desc())));
            }
            let mut buf = [0u8; 2048];
            while Instant::now() < deadline {
                set_rcvtimeo(&fd, slice)?;
                match socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                    Ok(n) => {
                        let b = &buf[..n];
                        let icmp = if v4 {
                            let ihl = usize::from(b.first().copied().unwrap_or(0) & 0x0f) * 4;
                            if b.len() < ihl + 8 {
                                continue;
                            }
                            &b[ihl..]
                        } else {
                            b
                        };
                        let (reply, unreach) = if v4 { (0, 3) } else { (129, 1) };
                        if icmp[0] == reply && contains(icmp, tok) {
                            answered(got);
                            return Ok(None);
                        }
                        // An error quotes our echo request: its id is inside.
                        if (icmp[0] == unreach || (!v4 && icmp[0] == 3) || (v4 && icmp[0] == 11))
                            && contains(&icmp[8..], &id.to_be_bytes())
                        {
                            return Ok(Some(format!(
                                "icmp{} type {} code {}",
                                if v4 { "" } else { "v6" },
                                icmp[0],
                                icmp[1]
                            )));
                        }
                    }
                    Err(nix::errno::Errno::EAGAIN) => {
                        if done(false) {
                            return Ok(None);
                        }
                    }
                    Err(e) => return Ok(Some(format!("recv: {}", e.desc()))),
                }
            }
            Ok(None)
        }
    }
}

/// Binds the receiver's socket to the probe's destination address (so
/// that a port a service holds on *another* address of the namespace —
/// dnsmasq's 53 on the gateway, with `bind-dynamic` — does not hide a
/// packet to this one), or to any address when the destination is not
/// one of the namespace's own yet (still tentative).
fn bind_dst<T>(p: &Probe, bind: impl Fn(IpAddr) -> std::io::Result<T>) -> std::io::Result<T> {
    match bind(p.dst) {
        Err(e) if e.kind() == ErrorKind::AddrNotAvailable => bind(unspecified(p.dst.is_ipv4())),
        r => r,
    }
}

fn answered(got: &Flags) {
    got.answered.store(true, Ordering::SeqCst);
}

fn bind_any(fd: &OwnedFd, v4: bool, port: u16) -> Result<(), String> {
    let r = if v4 {
        socket::bind(
            fd.as_raw_fd(),
            &SockaddrIn::from(std::net::SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)),
        )
    } else {
        socket::bind(
            fd.as_raw_fd(),
            &SockaddrIn6::from(std::net::SocketAddrV6::new(
                Ipv6Addr::UNSPECIFIED,
                port,
                0,
                0,
            )),
        )
    };
    r.map_err(|e| format!("bind port {port}: {}", e.desc()))
}

// ----------------------------------------------------------------------
// host services

/// What a host service made of a probe.
enum Served {
    Answered(String),
    /// An ICMP error or a reset came back instead.
    Refused(String),
    Nothing,
}

fn refused_or_nothing(e: &std::io::Error) -> Served {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => Served::Nothing,
        _ => Served::Refused(e.to_string()),
    }
}

/// Speaks the service's protocol to a port the receiver could not bind.
fn service(p: &Probe, timeout: Duration) -> Result<Served, String> {
    let v4 = p.dst.is_ipv4();
    let dport = p.dport.unwrap_or(0);
    match (p.proto, dport) {
        (L4::Tcp, _) => {
            let dst = SocketAddr::new(p.dst, dport);
            Ok(match TcpStream::connect_timeout(&dst, timeout) {
                Ok(_) => Served::Answered(format!("tcp {dport} accepted")),
                Err(e) => refused_or_nothing(&e),
            })
        }
        (L4::Udp, 53) => {
            let sock = UdpSocket::bind((unspecified(v4), p.sport.unwrap_or(0)))
                .map_err(|e| format!("udp bind: {e}"))?;
            sock.connect((p.dst, 53)).map_err(|e| e.to_string())?;
            // A query for `version.bind. CH TXT`, id 0x7e57: dnsmasq
            // answers it itself. A name it forwards would make the answer
            // depend on the upstream server of the test machine's
            // resolv.conf, which the namespace shares: unreachable, it is
            // refused at once, but an address inside a network's subnet
            // (a classful 10.0.0.0/8 and a 10.x resolver) is tried on the
            // bridge and never answers.
            let mut q = vec![0x7e, 0x57, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
            for label in ["version", "bind"] {
                q.push(label.len() as u8);
                q.extend_from_slice(label.as_bytes());
            }
            q.extend_from_slice(&[0, 0, 16, 0, 3]);
            if let Err(e) = sock.send(&q) {
                return Ok(Served::Refused(format!("send: {e}")));
            }
            sock.set_read_timeout(Some(timeout))
                .map_err(|e| e.to_string())?;
            let mut buf = [0u8; 1500];
            Ok(match sock.recv(&mut buf) {
                Ok(n) if n >= 4 && buf[0] == 0x7e && buf[1] == 0x57 && buf[2] & 0x80 != 0 => {
                    Served::Answered(format!("dns answer rcode {}", buf[3] & 0x0f))
                }
                Ok(_) => Served::Nothing,
                Err(e) => refused_or_nothing(&e),
            })
        }
        (L4::Udp, 67) if v4 => dhcp_inform(p, timeout),
        _ => Err(format!(
            "{:?} port {dport} of {} is held by a service the lab does not speak",
            p.proto, p.dst
        )),
    }
}

/// A DHCPINFORM from this namespace's address towards `p.dst:67`; the
/// server answers (DHCPACK) to our address, port 68. The socket is
/// connected to the server, so an ICMP error comes back to it too.
fn dhcp_inform(p: &Probe, timeout: Duration) -> Result<Served, String> {
    let IpAddr::V4(dst) = p.dst else {
        return Ok(Served::Nothing);
    };
    // Our address towards dst: what a connected socket picks.
    let probe = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(|e| e.to_string())?;
    probe
        .connect((dst, 67))
        .map_err(|e| format!("route to {dst}: {e}"))?;
    let IpAddr::V4(me) = probe.local_addr().map_err(|e| e.to_string())?.ip() else {
        return Ok(Served::Nothing);
    };
    drop(probe);
    let sock = UdpSocket::bind((me, 68)).map_err(|e| format!("udp bind {me}:68: {e}"))?;
    let xid: [u8; 4] = [0x76, 0x6e, 0x70, 0x62];
    let mut m = vec![0u8; 236];
    m[0] = 1; // BOOTREQUEST
    m[1] = 1; // ethernet
    m[2] = 6;
    m[4..8].copy_from_slice(&xid);
    m[12..16].copy_from_slice(&me.octets()); // ciaddr
    m[28..34].copy_from_slice(&[0x02, 0x76, 0x6e, 0x00, 0x00, 0x01]); // chaddr
    m.extend_from_slice(&[99, 130, 83, 99]); // magic cookie
    m.extend_from_slice(&[53, 1, 8]); // DHCPINFORM
    m.push(255);
    sock.connect((dst, 67)).map_err(|e| e.to_string())?;
    if let Err(e) = sock.send(&m) {
        return Ok(Served::Refused(format!("send: {e}")));
    }
    sock.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1500];
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match sock.recv(&mut buf) {
            Ok(n) if n > 240 && buf[0] == 2 && buf[4..8] == xid => {
                return Ok(Served::Answered("dhcp answer".into()))
            }
            Ok(_) => {}
            Err(e) => return Ok(refused_or_nothing(&e)),
        }
    }
    Ok(Served::Nothing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icmp_checksum_of_a_known_packet() {
        // Echo request, id 1, seq 1, no payload: 0x08 00 00 00 00 01 00 01.
        let pkt = [8u8, 0, 0, 0, 0, 1, 0, 1];
        assert_eq!(checksum(&pkt), 0xf7fd);
    }
}
