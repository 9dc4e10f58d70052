//! The FLOW syntax: `from IFACE SRC to DST PROTO [sport N] [dport N] [reply]`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Layer-4 protocol of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Icmp,
    Icmpv6,
    Udp,
    Tcp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Icmp => "icmp",
            Proto::Icmpv6 => "icmpv6",
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        }
    }

    /// IANA protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Icmp => 1,
            Proto::Icmpv6 => 58,
            Proto::Udp => 17,
            Proto::Tcp => 6,
        }
    }

    pub fn has_ports(self) -> bool {
        matches!(self, Proto::Udp | Proto::Tcp)
    }
}

/// One packet to trace (the first packet of a connection, or with
/// `reply` a packet of the reply direction of an earlier flow).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// Interface the packet arrives on.
    pub iif: String,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: Proto,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
    /// The packet answers an earlier traced flow (conntrack: established,
    /// or related for an ICMP error about a UDP/TCP flow).
    #[serde(default)]
    pub reply: bool,
}

/// A FLOW that could not be parsed: which word (0-based, of the flow's
/// words) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("word {} '{word}': {message}", index + 1)]
pub struct FlowError {
    pub index: usize,
    pub word: String,
    pub message: String,
}

impl Flow {
    /// Parse the words of one flow.
    pub fn from_words(words: &[&str]) -> Result<Flow, FlowError> {
        let err = |i: usize, m: &str| FlowError {
            index: i,
            word: words
                .get(i)
                .map_or_else(|| "(end)".to_string(), |w| w.to_string()),
            message: m.to_string(),
        };
        let kw = |i: usize, k: &str| -> Result<(), FlowError> {
            if words.get(i) == Some(&k) {
                Ok(())
            } else {
                Err(err(i, &format!("expected '{k}'")))
            }
        };
        let addr = |i: usize| -> Result<IpAddr, FlowError> {
            words
                .get(i)
                .and_then(|w| w.parse::<IpAddr>().ok())
                .ok_or_else(|| err(i, "expected an IPv4 or IPv6 address"))
        };
        kw(0, "from")?;
        let iif = match words.get(1) {
            Some(w) if !w.is_empty() && w.len() < 16 && !w.contains(['/', ' ', ',']) => {
                w.to_string()
            }
            _ => return Err(err(1, "expected an interface name (at most 15 characters)")),
        };
        let src = addr(2)?;
        kw(3, "to")?;
        let dst = addr(4)?;
        if src.is_ipv4() != dst.is_ipv4() {
            return Err(err(
                4,
                "source and destination are of different address families",
            ));
        }
        let proto = match words.get(5).copied() {
            Some("icmp") => Proto::Icmp,
            Some("icmpv6") => Proto::Icmpv6,
            Some("udp") => Proto::Udp,
            Some("tcp") => Proto::Tcp,
            _ => return Err(err(5, "expected icmp, icmpv6, udp or tcp")),
        };
        match (proto, src.is_ipv4()) {
            (Proto::Icmp, false) => {
                return Err(err(5, "icmp needs IPv4 addresses (icmpv6 for IPv6)"))
            }
            (Proto::Icmpv6, true) => {
                return Err(err(5, "icmpv6 needs IPv6 addresses (icmp for IPv4)"))
            }
            _ => {}
        }
        let mut f = Flow {
            iif,
            src,
            dst,
            proto,
            sport: None,
            dport: None,
            reply: false,
        };
        let mut i = 6;
        while i < words.len() {
            match words[i] {
                w @ ("sport" | "dport") => {
                    if !proto.has_ports() {
                        return Err(err(i, "ports need udp or tcp"));
                    }
                    let late = f.reply || (w == "sport" && f.dport.is_some());
                    let slot = if w == "sport" {
                        &mut f.sport
                    } else {
                        &mut f.dport
                    };
                    if slot.is_some() || late {
                        return Err(err(i, "out of order or repeated (sport, dport, reply)"));
                    }
                    let n = words
                        .get(i + 1)
                        .and_then(|v| v.parse::<u16>().ok())
                        .filter(|n| *n > 0)
                        .ok_or_else(|| err(i + 1, "expected a port number 1-65535"))?;
                    *slot = Some(n);
                    i += 2;
                }
                "reply" if !f.reply => {
                    f.reply = true;
                    i += 1;
                }
                _ => return Err(err(i, "expected sport, dport or reply (in this order)")),
            }
        }
        Ok(f)
    }

    /// Parse a list of flows: words separated by `,` (a comma may stick to
    /// a word), or a new flow simply starting with `from` again. Errors
    /// give the flow number (1-based) with the word.
    pub fn parse_list(args: &[String]) -> Result<Vec<Flow>, (usize, FlowError)> {
        let mut flows: Vec<Vec<String>> = vec![Vec::new()];
        for arg in args {
            for word in arg.split_whitespace() {
                let mut parts = word.split(',').peekable();
                while let Some(p) = parts.next() {
                    if p == "from" && flows.last().is_some_and(|f| !f.is_empty()) {
                        flows.push(Vec::new());
                    }
                    if !p.is_empty() {
                        if let Some(f) = flows.last_mut() {
                            f.push(p.to_string());
                        }
                    }
                    if parts.peek().is_some() && flows.last().is_some_and(|f| !f.is_empty()) {
                        flows.push(Vec::new());
                    }
                }
            }
        }
        if flows.last().is_some_and(|f| f.is_empty()) && flows.len() > 1 {
            flows.pop();
        }
        flows
            .iter()
            .enumerate()
            .map(|(n, words)| {
                let w: Vec<&str> = words.iter().map(String::as_str).collect();
                Flow::from_words(&w).map_err(|e| (n + 1, e))
            })
            .collect()
    }
}

impl FromStr for Flow {
    type Err = FlowError;
    fn from_str(s: &str) -> Result<Flow, FlowError> {
        let words: Vec<&str> = s.split_whitespace().collect();
        Flow::from_words(&words)
    }
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "from {} {} to {} {}",
            self.iif,
            self.src,
            self.dst,
            self.proto.as_str()
        )?;
        if let Some(p) = self.sport {
            write!(f, " sport {p}")?;
        }
        if let Some(p) = self.dport {
            write!(f, " dport {p}")?;
        }
        if self.reply {
            write!(f, " reply")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for s in [
            "from virbr0 192.168.122.5 to 8.8.8.8 udp sport 40000 dport 53",
            "from eth0 8.8.8.8 to 10.0.0.2 udp sport 53 dport 40000 reply",
            "from virbr0 fd00::5 to 2001:db8::1 icmpv6",
            "from eth0 1.2.3.4 to 192.168.122.5 tcp dport 22",
            "from eth0 1.2.3.4 to 192.168.122.5 icmp reply",
        ] {
            let f: Flow = s.parse().unwrap();
            assert_eq!(f.to_string(), s);
            assert_eq!(f.to_string().parse::<Flow>().unwrap(), f);
        }
    }

    #[test]
    fn errors_point_at_the_word() {
        let e = "from virbr0 192.168.122.5 to 8.8.8.8 udpx"
            .parse::<Flow>()
            .unwrap_err();
        assert_eq!(e.index, 5);
        assert_eq!(
            e.to_string(),
            "word 6 'udpx': expected icmp, icmpv6, udp or tcp"
        );
        let e = "from virbr0 192.168.122.5 to fd00::1 udp"
            .parse::<Flow>()
            .unwrap_err();
        assert_eq!(e.index, 4);
        let e = "from virbr0 1.2.3.4 to 1.2.3.5 icmp dport 3"
            .parse::<Flow>()
            .unwrap_err();
        assert_eq!(e.word, "dport");
        let e = "from virbr0 1.2.3.4 to 1.2.3.5 udp dport 0"
            .parse::<Flow>()
            .unwrap_err();
        assert_eq!(e.index, 7);
        let e = "from virbr0 1.2.3.4".parse::<Flow>().unwrap_err();
        assert_eq!(e.word, "(end)");
    }

    #[test]
    fn lists() {
        let args: Vec<String> = [
            "from a 1.1.1.1 to 2.2.2.2 udp dport 53,",
            "from b 2.2.2.2 to 1.1.1.1 udp sport 53 reply",
            "from c 1.1.1.1 to 2.2.2.2 icmp , from d 1.1.1.1 to 2.2.2.2 icmp",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let l = Flow::parse_list(&args).unwrap();
        let ifs: Vec<&str> = l.iter().map(|f| f.iif.as_str()).collect();
        assert_eq!(ifs, ["a", "b", "c", "d"]);
        let bad = vec!["from a 1.1.1.1 to 2.2.2.2 udp, from b x".to_string()];
        let (n, e) = Flow::parse_list(&bad).unwrap_err();
        assert_eq!((n, e.index), (2, 2));
    }
}
