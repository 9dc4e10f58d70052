//! libvirt's RPC packets: numbers, the header, framing and error bodies.
//!
//! A packet is a 4-byte big-endian length (counting itself), a 24-byte
//! header of six XDR words — program, version, procedure, type, serial,
//! status — and an XDR body. The numbers below are facts of libvirt's
//! protocol definitions (`virnetprotocol.x`, `virkeepaliveprotocol.x`,
//! `remote_protocol.x`, `virterror.h`, `libvirt-network.h`), written here
//! in our own form.

use std::io::{self, Read};

use super::xdr::{Decoder, Encoder, XdrError};

/// libvirt's largest packet (`VIR_NET_MESSAGE_MAX`), length word included.
pub const MESSAGE_MAX: u32 = 33_554_432;
/// The length word plus the header.
pub const HEADER_LEN: u32 = 4 + 24;
/// Longest string in a body (`REMOTE_STRING_MAX`).
pub const STRING_MAX: u32 = 4_194_304;
/// Longest list of networks in a reply (`REMOTE_NETWORK_LIST_MAX`).
pub const NETWORK_LIST_MAX: u32 = 16_384;
/// Most leases in a reply (`REMOTE_NETWORK_DHCP_LEASES_MAX`).
pub const DHCP_LEASES_MAX: u32 = 65_536;

/// The remote program (`REMOTE_PROGRAM`) and its version.
pub const REMOTE_PROGRAM: u32 = 0x2000_8086;
pub const REMOTE_VERSION: u32 = 1;
/// The keepalive program (`KEEPALIVE_PROGRAM`) and its procedures.
pub const KEEPALIVE_PROGRAM: u32 = 0x6b65_6570;
pub const KEEPALIVE_VERSION: u32 = 1;
pub const KEEPALIVE_PING: i32 = 1;
pub const KEEPALIVE_PONG: i32 = 2;

/// Message types (`virNetMessageType`).
pub mod msg_type {
    pub const CALL: u32 = 0;
    pub const REPLY: u32 = 1;
    pub const MESSAGE: u32 = 2;
    pub const STREAM: u32 = 3;
    pub const CALL_WITH_FDS: u32 = 4;
}

/// Message status (`virNetMessageStatus`).
pub mod status {
    pub const OK: u32 = 0;
    pub const ERROR: u32 = 1;
}

/// Procedure numbers of the remote program that virtnetd serves.
pub mod proc_ {
    pub const CONNECT_OPEN: i32 = 1;
    pub const CONNECT_CLOSE: i32 = 2;
    pub const CONNECT_GET_TYPE: i32 = 3;
    pub const CONNECT_GET_VERSION: i32 = 4;
    pub const CONNECT_LIST_DEFINED_NETWORKS: i32 = 36;
    pub const CONNECT_LIST_NETWORKS: i32 = 38;
    pub const NETWORK_CREATE: i32 = 39;
    pub const NETWORK_CREATE_XML: i32 = 40;
    pub const NETWORK_DEFINE_XML: i32 = 41;
    pub const NETWORK_DESTROY: i32 = 42;
    pub const NETWORK_GET_XML_DESC: i32 = 43;
    pub const NETWORK_GET_AUTOSTART: i32 = 44;
    pub const NETWORK_GET_BRIDGE_NAME: i32 = 45;
    pub const NETWORK_LOOKUP_BY_NAME: i32 = 46;
    pub const NETWORK_LOOKUP_BY_UUID: i32 = 47;
    pub const NETWORK_SET_AUTOSTART: i32 = 48;
    pub const NETWORK_UNDEFINE: i32 = 49;
    pub const CONNECT_NUM_OF_DEFINED_NETWORKS: i32 = 50;
    pub const CONNECT_NUM_OF_NETWORKS: i32 = 52;
    pub const CONNECT_GET_HOSTNAME: i32 = 59;
    pub const CONNECT_SUPPORTS_FEATURE: i32 = 60;
    pub const AUTH_LIST: i32 = 66;
    pub const CONNECT_GET_URI: i32 = 110;
    pub const CONNECT_IS_SECURE: i32 = 149;
    pub const NETWORK_IS_ACTIVE: i32 = 152;
    pub const NETWORK_IS_PERSISTENT: i32 = 153;
    pub const CONNECT_GET_LIB_VERSION: i32 = 157;
    pub const CONNECT_LIST_ALL_NETWORKS: i32 = 283;
    pub const NETWORK_UPDATE: i32 = 291;
    pub const CONNECT_NETWORK_EVENT_REGISTER_ANY: i32 = 313;
    pub const CONNECT_NETWORK_EVENT_DEREGISTER_ANY: i32 = 314;
    pub const NETWORK_EVENT_LIFECYCLE: i32 = 315;
    pub const NETWORK_GET_DHCP_LEASES: i32 = 341;
    pub const CONNECT_REGISTER_CLOSE_CALLBACK: i32 = 360;
    pub const CONNECT_UNREGISTER_CLOSE_CALLBACK: i32 = 361;
    pub const NETWORK_DEFINE_XML_FLAGS: i32 = 432;
    pub const NETWORK_CREATE_XML_FLAGS: i32 = 437;
}

/// `virConnectSupportsFeature` numbers (`VIR_DRV_FEATURE_*`) virtnetd
/// answers "yes" to.
pub mod feature {
    pub const PROGRAM_KEEPALIVE: i32 = 10;
    pub const REMOTE_EVENT_CALLBACK: i32 = 14;
    pub const REMOTE_CLOSE_CALLBACK: i32 = 15;
    /// VIR_DRV_FEATURE_NETWORK_UPDATE_HAS_CORRECT_ORDER: virsh then sends
    /// net-update's command before its section.
    pub const NETWORK_UPDATE_HAS_CORRECT_ORDER: i32 = 16;
}

/// libvirt error codes (`virErrorNumber`) virtnetd sends.
pub mod err {
    pub const INTERNAL_ERROR: i32 = 1;
    pub const NO_SUPPORT: i32 = 3;
    pub const INVALID_ARG: i32 = 8;
    pub const OPERATION_FAILED: i32 = 9;
    pub const XML_ERROR: i32 = 27;
    pub const OPERATION_DENIED: i32 = 29;
    pub const RPC: i32 = 39;
    pub const NO_NETWORK: i32 = 43;
    pub const OPERATION_INVALID: i32 = 55;
    pub const OPERATION_UNSUPPORTED: i32 = 84;
}

/// libvirt error domains (`virErrorDomain`).
pub mod domain {
    pub const NONE: i32 = 0;
    pub const RPC: i32 = 7;
    pub const NETWORK: i32 = 19;
    /// VIR_FROM_HOOK: a network hook script failed.
    pub const HOOK: i32 = 34;
}

/// `VIR_ERR_ERROR`, the level of every error virtnetd sends.
pub const LEVEL_ERROR: i32 = 2;

/// A packet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub prog: u32,
    pub vers: u32,
    pub proc_: i32,
    pub type_: u32,
    pub serial: u32,
    pub status: u32,
}

impl Header {
    pub fn decode(d: &mut Decoder<'_>) -> Result<Header, XdrError> {
        Ok(Header {
            prog: d.u32()?,
            vers: d.u32()?,
            proc_: d.i32()?,
            type_: d.u32()?,
            serial: d.u32()?,
            status: d.u32()?,
        })
    }

    /// The reply header to this call: same program, version, procedure
    /// and serial.
    pub fn reply(&self, status: u32) -> Header {
        Header {
            type_: msg_type::REPLY,
            status,
            ..*self
        }
    }
}

/// A whole packet: length word, header, `body`.
pub fn packet(h: &Header, body: &[u8]) -> Vec<u8> {
    let mut e = Encoder::new();
    e.u32(HEADER_LEN + body.len() as u32)
        .u32(h.prog)
        .u32(h.vers)
        .i32(h.proc_)
        .u32(h.type_)
        .u32(h.serial)
        .u32(h.status);
    let mut out = e.into_inner();
    out.extend_from_slice(body);
    out
}

/// A libvirt error (`virNetMessageError`): code, domain and the complete
/// message virsh prints after `error: `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibvirtError {
    pub code: i32,
    pub domain: i32,
    pub message: String,
}

impl LibvirtError {
    pub fn new(code: i32, domain: i32, message: impl Into<String>) -> Self {
        LibvirtError {
            code,
            domain,
            message: message.into(),
        }
    }

    /// `VIR_ERR_RPC` from the RPC layer (the message is used as is).
    pub fn rpc(message: impl Into<String>) -> Self {
        Self::new(err::RPC, domain::RPC, message)
    }

    /// `VIR_ERR_NO_SUPPORT` for public API `function`.
    pub fn no_support(function: &str) -> Self {
        Self::new(
            err::NO_SUPPORT,
            domain::NONE,
            format!("this function is not supported by the connection driver: {function}"),
        )
    }

    /// `VIR_ERR_OPERATION_DENIED` for public API `function` on a read-only
    /// connection.
    pub fn read_only(function: &str) -> Self {
        Self::new(
            err::OPERATION_DENIED,
            domain::NONE,
            format!("operation forbidden: read only access prevents {function}"),
        )
    }

    /// `VIR_ERR_INVALID_ARG`: flags `function` does not know.
    pub fn bad_flags(flags: u32, function: &str) -> Self {
        Self::new(
            err::INVALID_ARG,
            domain::NETWORK,
            format!("invalid argument: unsupported flags (0x{flags:x}) in function {function}"),
        )
    }

    /// The error body.
    pub fn encode(&self) -> Vec<u8> {
        // Keep the message within the protocol's string limit (on a char
        // boundary).
        let mut msg = self.message.as_str();
        if msg.len() > STRING_MAX as usize {
            let mut end = STRING_MAX as usize;
            while !msg.is_char_boundary(end) {
                end -= 1;
            }
            msg = &msg[..end];
        }
        let mut e = Encoder::new();
        e.i32(self.code)
            .i32(self.domain)
            .opt_string(Some(msg))
            .i32(LEVEL_ERROR)
            .bool(false) // dom
            .opt_string(None) // str1
            .opt_string(None)
            .opt_string(None)
            .i32(0) // int1
            .i32(0)
            .bool(false); // net
        e.into_inner()
    }
}

/// One packet as read by [`read_packet`].
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// Header and body.
    Packet(Header, Vec<u8>),
    /// The length word is below the header's size or above `max`; the
    /// stream cannot be resynchronised.
    BadLength(u32),
    /// End of stream before a packet started.
    Eof,
}

/// Read one packet of at most `max` bytes (length word included). The
/// body is read as it arrives, never allocated from the length word, so a
/// client that announces a large packet and stops costs only what it sent.
/// A stream that ends inside a packet is an `UnexpectedEof` error.
pub fn read_packet(r: &mut impl Read, max: u32) -> io::Result<Incoming> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(Incoming::Eof),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes(len);
    if len < HEADER_LEN || len > max.min(MESSAGE_MAX) {
        return Ok(Incoming::BadLength(len));
    }
    let mut rest = Vec::with_capacity((64 * 1024).min(len as usize));
    let want = u64::from(len - 4);
    r.take(want).read_to_end(&mut rest)?;
    if rest.len() as u64 != want {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let mut d = Decoder::new(&rest);
    // The header is 24 bytes and `rest` has at least that many.
    let h = Header::decode(&mut d)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    let body = rest.split_off(24);
    Ok(Incoming::Packet(h, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(proc_: i32) -> Header {
        Header {
            prog: REMOTE_PROGRAM,
            vers: REMOTE_VERSION,
            proc_,
            type_: msg_type::CALL,
            serial: 9,
            status: status::OK,
        }
    }

    #[test]
    fn packets_roundtrip_and_bad_lengths_are_reported() {
        let p = packet(&call(46), &[1, 2, 3, 4]);
        assert_eq!(&p[..4], &32u32.to_be_bytes());
        assert_eq!(
            read_packet(&mut &p[..], 1 << 20).unwrap(),
            Incoming::Packet(call(46), vec![1, 2, 3, 4])
        );
        assert_eq!(read_packet(&mut &[][..], 1 << 20).unwrap(), Incoming::Eof);
        for len in [0u32, 27, (1 << 20) + 1, u32::MAX] {
            let b = len.to_be_bytes();
            assert_eq!(
                read_packet(&mut &b[..], 1 << 20).unwrap(),
                Incoming::BadLength(len)
            );
        }
        // Ends inside the length word, or inside the announced packet.
        for cut in [2, 10, p.len() - 1] {
            let e = read_packet(&mut &p[..cut], 1 << 20).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "cut at {cut}");
        }
    }

    #[test]
    fn error_body_layout() {
        let b = LibvirtError::no_support("virNetworkUpdate").encode();
        let mut d = Decoder::new(&b);
        assert_eq!(d.i32(), Ok(err::NO_SUPPORT));
        assert_eq!(d.i32(), Ok(domain::NONE));
        assert_eq!(
            d.opt_string(STRING_MAX).unwrap().as_deref(),
            Some("this function is not supported by the connection driver: virNetworkUpdate")
        );
        assert_eq!(d.i32(), Ok(LEVEL_ERROR));
        assert_eq!(d.bool(), Ok(false));
        for _ in 0..3 {
            assert_eq!(d.opt_string(STRING_MAX), Ok(None));
        }
        assert_eq!((d.i32(), d.i32(), d.bool()), (Ok(0), Ok(0), Ok(false)));
        assert_eq!(d.remaining(), 0);
    }
}
