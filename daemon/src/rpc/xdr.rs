//! XDR (RFC 4506) as libvirt's RPC bodies use it: big-endian 4-byte
//! integers, 8-byte hypers, length-prefixed strings and variable arrays
//! padded to 4 bytes, fixed opaque data, and `*T` optionals (a 4-byte
//! boolean, then the value when true).
//!
//! Hand-written, about a hundred lines: the XDR crates on crates.io either
//! go through serde with their own idea of optionals and enums
//! (`serde-xdr`, unmaintained since 2018) or generate code from `.x` files
//! at build time (`xdr-codec`/`xdrgen`, unmaintained, and they would need
//! libvirt's `.x` files, which this repository does not carry). What the
//! server needs is small, and it needs one thing those crates do not give:
//! every length is checked against both its protocol limit and the bytes
//! actually left *before* anything is allocated, so a hostile length costs
//! nothing.

use std::fmt;

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XdrError {
    /// The body ended inside a value.
    Truncated { want: usize, left: usize },
    /// A string or array longer than its protocol limit.
    TooLong { len: u32, max: u32 },
    /// A boolean/optional discriminant that is neither 0 nor 1.
    BadBool(u32),
    /// A string that is not UTF-8.
    NotUtf8,
}

impl fmt::Display for XdrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XdrError::Truncated { want, left } => {
                write!(
                    f,
                    "truncated message: {want} more bytes wanted, {left} left"
                )
            }
            XdrError::TooLong { len, max } => {
                write!(f, "length {len} exceeds the protocol limit of {max}")
            }
            XdrError::BadBool(v) => write!(f, "invalid boolean/optional discriminant {v}"),
            XdrError::NotUtf8 => f.write_str("string is not valid UTF-8"),
        }
    }
}

fn pad(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// Reads values from a body, front to back.
#[derive(Debug)]
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Decoder { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], XdrError> {
        let left = self.remaining();
        if n > left {
            return Err(XdrError::Truncated { want: n, left });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn u32(&mut self) -> Result<u32, XdrError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn i32(&mut self) -> Result<i32, XdrError> {
        Ok(self.u32()? as i32)
    }

    pub fn bool(&mut self) -> Result<bool, XdrError> {
        match self.u32()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(XdrError::BadBool(v)),
        }
    }

    /// Fixed-length opaque data (`opaque x[N]`).
    pub fn fixed(&mut self, n: usize) -> Result<&'a [u8], XdrError> {
        let s = self.take(n)?;
        self.take(pad(n))?;
        Ok(s)
    }

    /// `string<max>`.
    pub fn string(&mut self, max: u32) -> Result<String, XdrError> {
        let len = self.u32()?;
        if len > max {
            return Err(XdrError::TooLong { len, max });
        }
        let bytes = self.fixed(len as usize)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| XdrError::NotUtf8)
    }

    /// `string<max> *` (an optional string).
    pub fn opt_string(&mut self, max: u32) -> Result<Option<String>, XdrError> {
        if self.bool()? {
            self.string(max).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Builds a body.
#[derive(Debug, Default)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    pub fn new() -> Self {
        Encoder::default()
    }

    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.u32(v as u32)
    }

    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u32(u32::from(v))
    }

    pub fn fixed(&mut self, data: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(data);
        self.buf.resize(self.buf.len() + pad(data.len()), 0);
        self
    }

    /// A string; the caller keeps it within the protocol limit.
    pub fn string(&mut self, s: &str) -> &mut Self {
        self.u32(s.len() as u32);
        self.fixed(s.as_bytes())
    }

    pub fn opt_string(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            Some(s) => self.bool(true).string(s),
            None => self.bool(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_padding() {
        let mut e = Encoder::new();
        e.u32(7)
            .i32(-2)
            .string("abcde")
            .opt_string(None)
            .opt_string(Some("x"));
        e.fixed(&[1, 2, 3]);
        let b = e.into_inner();
        assert_eq!(b.len(), 4 + 4 + (4 + 8) + 4 + (4 + 4 + 4) + 4);
        let mut d = Decoder::new(&b);
        assert_eq!(d.u32(), Ok(7));
        assert_eq!(d.i32(), Ok(-2));
        assert_eq!(d.string(10).as_deref(), Ok("abcde"));
        assert_eq!(d.opt_string(10), Ok(None));
        assert_eq!(d.opt_string(10), Ok(Some("x".into())));
        assert_eq!(d.fixed(3), Ok(&[1u8, 2, 3][..]));
        assert_eq!(d.remaining(), 0);
        assert!(matches!(
            d.u32(),
            Err(XdrError::Truncated { want: 4, left: 0 })
        ));
    }

    #[test]
    fn hostile_lengths_cost_nothing() {
        // A string claiming 4 GiB in an 8-byte body: refused by the limit,
        // then (under a huge limit) by the bytes left — never allocated.
        let b = [0xff, 0xff, 0xff, 0xf0, b'a', b'b', b'c', b'd'];
        assert_eq!(
            Decoder::new(&b).string(100),
            Err(XdrError::TooLong {
                len: 0xffff_fff0,
                max: 100
            })
        );
        assert!(matches!(
            Decoder::new(&b).string(u32::MAX),
            Err(XdrError::Truncated { .. })
        ));
        assert_eq!(
            Decoder::new(&[0, 0, 0, 2]).bool(),
            Err(XdrError::BadBool(2))
        );
        assert_eq!(
            Decoder::new(&[0, 0, 0, 1, 0xff, 0, 0, 0]).string(9),
            Err(XdrError::NotUtf8)
        );
    }
}
