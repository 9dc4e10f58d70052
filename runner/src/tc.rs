//! The batched layout's `tc` commands (libvirt's DHCP checksum filter and
//! the root qdisc it hangs on), sent to the kernel from this process as
//! the rtnetlink requests `tc` sends ([`crate::Runner::run_direct`] of the
//! real runner).
//!
//! Why: iproute2's `tc` dumps every link of the host to resolve one device
//! name (`ll_init_map`), so each `tc` process costs O(links): at 1,000
//! networks, with a bridge and its dummy per network, that dump is most of
//! a batched start's firewall time once `nft` is in-process
//! ([`crate::nft`]). The device is resolved here with one
//! `if_nametoindex(3)`, as `tc` itself falls back to.
//!
//! **What is carried out here** (exact forms; anything else is `None` and
//! the real `tc` runs):
//!
//! - `tc -batch -` whose lines are the two forms below (without `tc`),
//!   run line by line as `tc` does: each line is its own request, the
//!   first failing line stops the batch, and the output ends with `tc`'s
//!   `Command failed -:LINE` (status 1);
//! - `qdisc add dev DEV root handle MAJOR: htb default CLASS`;
//! - `filter add|del dev DEV prio PRIO protocol ip parent MAJOR: u32 match
//!   ip dport PORT ffff action csum ip and udp`.
//!
//! The requests are byte for byte what iproute2 6.1's `tc` sends for these
//! forms (same flags, `tcmsg`, attributes, htb defaults `r2q 10`, version 3;
//! the u32 key at offset 20; the csum action's `ok` verdict and its
//! IPv4-header and UDP update flags): `core/tests/tc_direct_real.rs` captures
//! `tc`'s own requests (strace) and compares them with these, and compares
//! the qdiscs both leave on a real bridge. Errors are printed as `tc` prints
//! them: the kernel's extended-ack message (`Error: MESSAGE.`) or
//! `RTNETLINK answers: ERRNO TEXT`, for a filter then `We have an error
//! talking to the kernel`; an unknown device as `Cannot find device
//! "DEV"`; status 2 for a single command.

use std::os::fd::AsRawFd;

use nix::sys::socket::{recv, sendto, MsgFlags, NetlinkAddr, SockProtocol};

use crate::{Cmd, Output};

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 0x2;
/// On an error message: the request is not echoed whole.
const NLM_F_CAPPED: u16 = 0x100;
/// On an error message: extended-ack attributes follow.
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;
const RTM_NEWQDISC: u16 = 36;
const RTM_QDISC_KIND: u16 = RTM_NEWQDISC;
const RTM_NEWTFILTER: u16 = 44;
const RTM_DELTFILTER: u16 = 45;
const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TC_H_ROOT: u32 = 0xffff_ffff;
const ETH_P_IP: u16 = 0x0800;
/// linux/netlink.h: `NETLINK_EXT_ACK` socket option (the kernel's error
/// messages, as `tc` asks for them).
const NETLINK_EXT_ACK: i32 = 11;
const SOL_NETLINK: i32 = 270;

/// One request: the message type, flags, device, `tcmsg` fields and
/// attributes.
struct Request {
    kind: u16,
    flags: u16,
    dev: String,
    handle: u32,
    parent: u32,
    info: u32,
    attrs: Vec<u8>,
}

fn attr(buf: &mut Vec<u8>, ty: u16, data: &[u8]) {
    buf.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(data);
    while buf.len() % 4 != 0 {
        buf.push(0);
    }
}

/// A nested attribute as `tc` writes it (`addattr_nest`: no
/// `NLA_F_NESTED` flag unless `flag`).
fn nest(buf: &mut Vec<u8>, ty: u16, f: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    f(buf);
    let len = (buf.len() - start) as u16;
    buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    buf[start + 2..start + 4].copy_from_slice(&ty.to_ne_bytes());
}

fn u32s(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

/// `MAJOR:` (hex, as tc reads it) as a handle.
fn major(s: &str) -> Option<u32> {
    let m = s.strip_suffix(':')?;
    if m.is_empty() || m.len() > 4 || !m.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(m, 16).ok().map(|m| m << 16)
}

/// A device name `tc` would take as it is.
fn device(s: &str) -> Option<String> {
    (!s.is_empty()
        && s.len() < 16
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)))
    .then(|| s.to_string())
}

/// One command's words (without `tc`) as its request; `None`: not this
/// module's.
fn parse(words: &[&str]) -> Option<Request> {
    match words {
        ["qdisc", "add", "dev", dev, "root", "handle", handle, "htb", "default", class] => {
            let handle = major(handle)?;
            if class.is_empty() || !class.chars().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            let class = u32::from_str_radix(class, 16).ok()?;
            let mut attrs = Vec::new();
            attr(&mut attrs, TCA_KIND, b"htb\0");
            nest(&mut attrs, TCA_OPTIONS, |o| {
                // TCA_HTB_INIT: struct tc_htb_glob { version 3, rate2quantum
                // 10, defcls, debug 0, direct_pkts 0 }.
                attr(o, 2, &u32s(&[3, 10, class, 0, 0]));
            });
            Some(Request {
                kind: RTM_NEWQDISC,
                flags: NLM_F_CREATE | NLM_F_EXCL,
                dev: device(dev)?,
                handle,
                parent: TC_H_ROOT,
                info: 0,
                attrs,
            })
        }
        ["filter", verb @ ("add" | "del"), "dev", dev, "prio", prio, "protocol", "ip", "parent", parent, "u32", "match", "ip", "dport", port, "ffff", "action", "csum", "ip", "and", "udp"] =>
        {
            let prio: u16 = prio.parse().ok().filter(|p: &u16| p.to_string() == *prio)?;
            let port: u16 = port.parse().ok().filter(|p: &u16| p.to_string() == *port)?;
            let mut attrs = Vec::new();
            attr(&mut attrs, TCA_KIND, b"u32\0");
            nest(&mut attrs, TCA_OPTIONS, |o| {
                // TCA_U32_ACT: action 1 = csum (TCA_ACT_OPTIONS nested,
                // flagged as tc flags it).
                nest(o, 7, |acts| {
                    nest(acts, 1, |a| {
                        attr(a, 1, b"csum\0");
                        nest(a, 2 | 0x8000, |p| {
                            // TCA_CSUM_PARMS: tc_gen (index, capab, action
                            // TC_ACT_OK, refcnt, bindcnt), update flags
                            // IPV4HDR | UDP.
                            attr(p, 1, &u32s(&[0, 0, 0, 0, 0, 0x1 | 0x10]));
                        });
                    });
                });
                // TCA_U32_SEL: flags TC_U32_TERMINAL, one key: the 16 bits
                // at offset 22 (`ip dport`, assuming a 20-byte header) in
                // the word at offset 20.
                let mut sel = vec![1u8, 0, 1, 0];
                sel.extend_from_slice(&[0; 12]); // offmask, off, offoff, hoff, hmask
                sel.extend_from_slice(&0x0000_ffffu32.to_be_bytes());
                sel.extend_from_slice(&u32::from(port).to_be_bytes());
                sel.extend_from_slice(&20i32.to_ne_bytes());
                sel.extend_from_slice(&0i32.to_ne_bytes());
                attr(o, 5, &sel);
            });
            let (kind, flags) = if *verb == "add" {
                (RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_EXCL)
            } else {
                (RTM_DELTFILTER, 0)
            };
            Some(Request {
                kind,
                flags,
                dev: device(dev)?,
                handle: 0,
                parent: major(parent)?,
                info: (u32::from(prio) << 16)
                    | u32::from(u16::from_ne_bytes(ETH_P_IP.to_be_bytes())),
                attrs,
            })
        }
        _ => None,
    }
}

/// The line `tc -batch` stopped at (its `Command failed -:N`, 1-based),
/// from its stderr.
pub fn failed_batch_line(stderr: &str) -> Option<usize> {
    stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("Command failed -:"))
        .and_then(|n| n.trim().parse::<usize>().ok())
}

/// Sends `req`; on failure `tc`'s status for a single command and its
/// words.
fn talk(req: &Request) -> Result<(), (i32, String)> {
    let Ok(ifindex) = nix::net::if_::if_nametoindex(req.dev.as_str()) else {
        return Err((1, format!("Cannot find device \"{}\"", req.dev)));
    };
    talk_to(req, ifindex).map_err(|e| (2, e))
}

fn talk_to(req: &Request, ifindex: u32) -> Result<(), String> {
    let fd = crate::netlink::socket_for(SockProtocol::NetlinkRoute)?;
    let one: i32 = 1;
    // SAFETY: setsockopt(2) on a socket this function owns, with a pointer
    // to a live i32 and its size; the kernel only reads it.
    unsafe {
        nix::libc::setsockopt(
            fd.as_raw_fd(),
            SOL_NETLINK,
            NETLINK_EXT_ACK,
            (&one as *const i32).cast(),
            std::mem::size_of::<i32>() as nix::libc::socklen_t,
        );
    }
    let seq = crate::netlink::first_seq();
    let msg = encode(req, ifindex, seq);
    sendto(
        fd.as_raw_fd(),
        &msg,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .map_err(|e| format!("netlink send: {e}"))?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())
            .map_err(|e| format!("netlink receive: {e}"))?;
        if let Some((errno, message)) = answer(&buf[..n], seq) {
            return match (errno, message) {
                (0, _) => Ok(()),
                (_, Some(m)) => Err(format!(
                    "Error: {m}{}{}",
                    if m.ends_with('.') { "" } else { "." },
                    filter_words(req)
                )),
                (e, None) => Err(format!(
                    "RTNETLINK answers: {}{}",
                    nix::errno::Errno::from_raw(e).desc(),
                    filter_words(req)
                )),
            };
        }
    }
}

/// What `tc` adds to the kernel's error for a filter command (its qdisc
/// commands add nothing).
fn filter_words(req: &Request) -> &'static str {
    if req.kind == RTM_QDISC_KIND {
        ""
    } else {
        "\nWe have an error talking to the kernel"
    }
}

fn encode(req: &Request, ifindex: u32, seq: u32) -> Vec<u8> {
    let mut m = Vec::new();
    let len = (16 + 20 + req.attrs.len()) as u32;
    m.extend_from_slice(&len.to_ne_bytes());
    m.extend_from_slice(&req.kind.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK | req.flags).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // struct tcmsg: family, 3 pad bytes, ifindex, handle, parent, info.
    m.extend_from_slice(&[0, 0, 0, 0]);
    m.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    m.extend_from_slice(&u32s(&[req.handle, req.parent, req.info]));
    m.extend_from_slice(&req.attrs);
    m
}

/// The errno and extended-ack message of the answer to `seq` in `buf`.
fn answer(buf: &[u8], seq: u32) -> Option<(i32, Option<String>)> {
    let mut at = 0;
    while at + 16 <= buf.len() {
        let word = |o: usize| u32::from_ne_bytes([buf[o], buf[o + 1], buf[o + 2], buf[o + 3]]);
        let len = word(at) as usize;
        if len < 16 || at + len > buf.len() {
            return None;
        }
        let ty = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
        let flags = u16::from_ne_bytes([buf[at + 6], buf[at + 7]]);
        if ty == NLMSG_ERROR && len >= 36 && word(at + 20 + 8) == seq {
            let errno = -(word(at + 16) as i32);
            let mut message = None;
            if flags & NLM_F_ACK_TLVS != 0 {
                // The request's header (and its body unless capped), then
                // attributes.
                let echoed = if flags & NLM_F_CAPPED != 0 {
                    16
                } else {
                    word(at + 20) as usize
                };
                let mut a = at + 20 + ((echoed + 3) & !3);
                while a + 4 <= at + len {
                    let alen = u16::from_ne_bytes([buf[a], buf[a + 1]]) as usize;
                    let aty = u16::from_ne_bytes([buf[a + 2], buf[a + 3]]);
                    if alen < 4 || a + alen > at + len {
                        break;
                    }
                    if aty == NLMSGERR_ATTR_MSG {
                        let text = &buf[a + 4..a + alen];
                        let text = text.split(|b| *b == 0).next().unwrap_or(&[]);
                        message = Some(String::from_utf8_lossy(text).into_owned());
                    }
                    a += (alen + 3) & !3;
                }
            }
            return Some((errno, message));
        }
        at += (len + 3) & !3;
    }
    None
}

/// A `tc` command of this module's forms, carried out in this process;
/// `None`: any other (the real `tc` runs).
pub fn in_process(cmd: &Cmd) -> Option<Output> {
    if !cmd.env.is_empty() || cmd.argv.first().map(String::as_str) != Some("tc") {
        return None;
    }
    let args: Vec<&str> = cmd.argv[1..].iter().map(String::as_str).collect();
    if args == ["-batch", "-"] {
        let input = cmd.stdin.as_deref()?;
        let lines: Vec<(usize, Request)> = input
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(k, l)| Some((k + 1, parse(&l.split_whitespace().collect::<Vec<_>>())?)))
            .collect::<Option<_>>()?;
        if lines.is_empty() {
            return None;
        }
        for (n, req) in &lines {
            if let Err((_, e)) = talk(req) {
                return Some(Output {
                    status: 1,
                    stdout: String::new(),
                    stderr: format!("{e}\nCommand failed -:{n}\n"),
                });
            }
        }
        return Some(Output::ok(""));
    }
    if cmd.stdin.is_some() {
        return None;
    }
    let req = parse(&args)?;
    Some(match talk(&req) {
        Ok(()) => Output::ok(""),
        Err((status, e)) => Output {
            status,
            stdout: String::new(),
            stderr: format!("{e}\n"),
        },
    })
}

/// The request of a command line's words (without `tc`), encoded for
/// `ifindex` with sequence number `seq`: what [`in_process`] sends, for
/// comparing with what `tc` sends. `None`: not this module's.
pub fn request_bytes(words: &[&str], ifindex: u32, seq: u32) -> Option<Vec<u8>> {
    parse(words).map(|r| encode(&r, ifindex, seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILTER: &str = "filter add dev virbr0 prio 2 protocol ip parent 1: u32 match ip dport 68 ffff action csum ip and udp";

    fn words(s: &str) -> Vec<&str> {
        s.split_whitespace().collect()
    }

    #[test]
    fn the_batched_layouts_tc_lines_are_understood() {
        let q = parse(&words("qdisc add dev virbr0 root handle 1: htb default 2")).expect("known");
        assert_eq!(
            (q.kind, q.handle, q.parent),
            (RTM_NEWQDISC, 0x1_0000, TC_H_ROOT)
        );
        let f = parse(&words(FILTER)).expect("known");
        assert_eq!(
            (f.kind, f.parent, f.info),
            (RTM_NEWTFILTER, 0x1_0000, 0x0002_0008)
        );
        let d = parse(&words(&FILTER.replace(" add ", " del "))).expect("known");
        assert_eq!((d.kind, d.flags), (RTM_DELTFILTER, 0));
        assert_eq!(d.attrs, f.attrs);
    }

    #[test]
    fn anything_else_is_left_to_tc() {
        for s in [
            "qdisc show dev virbr0 handle 1:",
            "qdisc add dev virbr0 root handle 1: htb default 2 r2q 5",
            "qdisc add dev virbr0 root handle 1g: htb default 2",
            "qdisc del dev virbr0 root",
            "filter add dev virbr0 prio 02 protocol ip parent 1: u32 match ip dport 68 ffff action csum ip and udp",
            "filter add dev virbr0 prio 2 protocol ipv6 parent 1: u32 match ip dport 68 ffff action csum ip and udp",
            "filter add dev vir\"br0 prio 2 protocol ip parent 1: u32 match ip dport 68 ffff action csum ip and udp",
            "class add dev virbr0 parent 1: classid 1:1 htb rate 1mbit",
        ] {
            assert!(parse(&words(s)).is_none(), "{s:?} was taken");
        }
        let batch = |s: &str| Cmd::new(["tc", "-batch", "-"]).with_stdin(s);
        assert!(in_process(&batch("qdisc show dev virbr0\n")).is_none());
        assert!(in_process(&batch("\n")).is_none());
        assert!(in_process(&Cmd::new(["tc", "-s", "qdisc", "show"])).is_none());
    }

    #[test]
    fn the_u32_selector_is_tcs() {
        // The bytes tc 6.1 sends for `match ip dport 68 ffff` (strace).
        let f = parse(&words(FILTER)).expect("known");
        let sel: &[u8] = b"\x24\x00\x05\x00\x01\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\x00\x00\x00\x44\x14\x00\x00\x00\x00\x00\x00\x00";
        assert!(
            f.attrs.windows(sel.len()).any(|w| w == sel),
            "{:x?}",
            f.attrs
        );
    }

    #[test]
    fn the_failed_line_of_a_batch_is_read_from_the_last_mention() {
        let err = "Error: Failed to load TC action module.\nWe have an error talking to the kernel\nCommand failed -:2\n";
        assert_eq!(failed_batch_line(err), Some(2));
        assert_eq!(
            failed_batch_line("Command failed -:1\nCommand failed -:3"),
            Some(3)
        );
        assert_eq!(failed_batch_line("Command failed -:x\n"), None);
        assert_eq!(failed_batch_line("RTNETLINK answers: File exists\n"), None);
    }

    #[test]
    fn an_extended_ack_message_is_read() {
        // nlmsgerr (ENOENT) echoing a capped request, then the message.
        let mut buf = Vec::new();
        let text = b"Failed to load TC action module\0";
        let len = 16 + 4 + 16 + 4 + text.len();
        buf.extend_from_slice(&(len as u32).to_ne_bytes());
        buf.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        buf.extend_from_slice(&(NLM_F_CAPPED | NLM_F_ACK_TLVS).to_ne_bytes());
        buf.extend_from_slice(&[0; 8]);
        buf.extend_from_slice(&(-2i32).to_ne_bytes());
        buf.extend_from_slice(&36u32.to_ne_bytes());
        buf.extend_from_slice(&RTM_NEWTFILTER.to_ne_bytes());
        buf.extend_from_slice(&0u16.to_ne_bytes());
        buf.extend_from_slice(&77u32.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        attr(&mut buf, NLMSGERR_ATTR_MSG, text);
        assert_eq!(
            answer(&buf, 77),
            Some((2, Some("Failed to load TC action module".to_string())))
        );
        assert_eq!(answer(&buf, 78), None);
    }
}
