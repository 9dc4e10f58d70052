//! The wire protocol: JSON lines over a UNIX stream socket.
//!
//! Request, one per line: `{"id": <any JSON>, "method": "<name>", "params": {..}}`
//! (`params` may be omitted or `null`, meaning `{}`).
//! Response, one per line, in request order: `{"id": <same>, "result": <JSON>}`
//! or `{"id": <same>, "error": {"code": <int>, "message": "<text>"}}`.
//! A request that cannot be parsed far enough to find its id is answered with
//! `"id": null`. Lines longer than the reader's limit are discarded and
//! answered with [`ErrorCode::RequestTooLarge`]; the connection stays usable.

use std::io::{self, BufRead, BufReader, Read};

use serde_json::{json, Map, Value};

/// Default longest request line a server accepts (1 MiB).
pub const MAX_REQUEST_BYTES: usize = 1 << 20;
/// Default longest response line a client accepts (64 MiB).
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// Error codes. Protocol errors use JSON-RPC's numbers; policy and daemon
/// errors small positive ones; drivers may use any other code (by convention
/// 100 and up) through [`RpcError::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i64)]
pub enum ErrorCode {
    /// The line is not JSON.
    ParseError = -32700,
    /// JSON, but not a request object (no method, params not an object, ...).
    InvalidRequest = -32600,
    /// No such method.
    MethodNotFound = -32601,
    /// The method exists but the params are wrong.
    InvalidParams = -32602,
    /// A bug in the daemon or the service (e.g. it panicked).
    Internal = -32603,
    /// The method changes state and the client is on the read-only socket.
    ReadOnly = 1,
    /// The peer's uid is not allowed on this socket.
    AccessDenied = 2,
    /// The method exists but not on this socket (admin vs. driver methods).
    WrongSocket = 3,
    /// The request line exceeds the size limit.
    RequestTooLarge = 4,
    /// The driver is not part of this build / not configured.
    DriverUnavailable = 5,
    /// The daemon has reached its client limit.
    TooManyClients = 6,
    /// Generic failure of an operation.
    OperationFailed = 7,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::ParseError,
        ErrorCode::InvalidRequest,
        ErrorCode::MethodNotFound,
        ErrorCode::InvalidParams,
        ErrorCode::Internal,
        ErrorCode::ReadOnly,
        ErrorCode::AccessDenied,
        ErrorCode::WrongSocket,
        ErrorCode::RequestTooLarge,
        ErrorCode::DriverUnavailable,
        ErrorCode::TooManyClients,
        ErrorCode::OperationFailed,
    ];

    pub fn code(self) -> i64 {
        self as i64
    }

    pub fn from_code(code: i64) -> Option<ErrorCode> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }
}

/// An error response body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[error("{message} (error code {code})")]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
        }
    }
    pub fn with(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(code.code(), message)
    }
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::with(ErrorCode::InvalidParams, message)
    }
    pub fn method_not_found(method: &str) -> Self {
        Self::with(
            ErrorCode::MethodNotFound,
            format!("unknown method {method:?}"),
        )
    }
    /// The known code, if it is one of ours.
    pub fn kind(&self) -> Option<ErrorCode> {
        ErrorCode::from_code(self.code)
    }
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: Value,
    pub method: String,
    /// Always an object (`{}` when omitted).
    pub params: Value,
}

impl Request {
    /// Parse one request line. On failure returns the id (if one could be
    /// found) together with the error to answer.
    pub fn parse(line: &[u8]) -> Result<Request, (Value, RpcError)> {
        let v: Value = serde_json::from_slice(line).map_err(|e| {
            (
                Value::Null,
                RpcError::with(
                    ErrorCode::ParseError,
                    format!("malformed JSON request: {e}"),
                ),
            )
        })?;
        let Value::Object(mut obj) = v else {
            return Err((
                Value::Null,
                RpcError::with(
                    ErrorCode::InvalidRequest,
                    "a request must be a JSON object with \"id\", \"method\" and \"params\"",
                ),
            ));
        };
        let id = obj.remove("id").unwrap_or(Value::Null);
        let method = match obj.remove("method") {
            Some(Value::String(m)) => m,
            Some(_) => {
                return Err((
                    id,
                    RpcError::with(ErrorCode::InvalidRequest, "\"method\" must be a string"),
                ))
            }
            None => {
                return Err((
                    id,
                    RpcError::with(ErrorCode::InvalidRequest, "request has no \"method\""),
                ))
            }
        };
        let params = match obj.remove("params") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(p @ Value::Object(_)) => p,
            Some(_) => {
                return Err((
                    id,
                    RpcError::with(
                        ErrorCode::InvalidRequest,
                        "\"params\" must be a JSON object",
                    ),
                ))
            }
        };
        Ok(Request { id, method, params })
    }

    /// The request as one line (with trailing newline).
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(
            &json!({"id": self.id, "method": self.method, "params": self.params}),
        )
        .unwrap_or_default();
        line.push(b'\n');
        line
    }
}

/// A response line: success or error for `id`.
pub fn response_line(id: &Value, result: Result<Value, RpcError>) -> Vec<u8> {
    let v = match result {
        Ok(result) => json!({"id": id, "result": result}),
        Err(err) => json!({"id": id, "error": {"code": err.code, "message": err.message}}),
    };
    // Serialising a Value cannot fail (all keys are strings).
    let mut line = serde_json::to_vec(&v).unwrap_or_else(|_| {
        br#"{"id":null,"error":{"code":-32603,"message":"cannot encode response"}}"#.to_vec()
    });
    line.push(b'\n');
    line
}

/// A parsed response.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub id: Value,
    pub result: Result<Value, RpcError>,
}

impl Response {
    /// Parse one response line; the error says what is wrong with it.
    pub fn parse(line: &[u8]) -> Result<Response, String> {
        let v: Value =
            serde_json::from_slice(line).map_err(|e| format!("response is not JSON: {e}"))?;
        let Value::Object(mut obj) = v else {
            return Err("response is not a JSON object".into());
        };
        let id = obj.remove("id").unwrap_or(Value::Null);
        match (obj.remove("result"), obj.remove("error")) {
            (Some(result), None) => Ok(Response {
                id,
                result: Ok(result),
            }),
            (None, Some(err)) => {
                let err: RpcError = serde_json::from_value(err)
                    .map_err(|e| format!("malformed \"error\" in response: {e}"))?;
                Ok(Response {
                    id,
                    result: Err(err),
                })
            }
            _ => Err("response must have exactly one of \"result\" and \"error\"".into()),
        }
    }
}

/// One line read by [`LineReader`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineRead {
    /// A complete line without its `\n` (a final line without `\n` counts too).
    Line(Vec<u8>),
    /// A line longer than the limit was read and thrown away (up to and
    /// including its `\n`); `len` is how many bytes it had.
    TooLong { len: usize },
    /// End of stream.
    Eof,
}

/// A line reader that never buffers more than `max` bytes of one line.
#[derive(Debug)]
pub struct LineReader<R> {
    inner: BufReader<R>,
    max: usize,
}

impl<R: Read> LineReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner: BufReader::with_capacity(64 * 1024, inner),
            max,
        }
    }

    pub fn get_ref(&self) -> &R {
        self.inner.get_ref()
    }

    /// Read the next line.
    pub fn read_line(&mut self) -> io::Result<LineRead> {
        let mut line = Vec::new();
        let mut len = 0usize;
        let mut overflow = false;
        loop {
            let buf = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                return Ok(if overflow {
                    LineRead::TooLong { len }
                } else if len > 0 {
                    LineRead::Line(line)
                } else {
                    LineRead::Eof
                });
            }
            let (chunk, consumed, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..i], i + 1, true),
                None => (buf, buf.len(), false),
            };
            len += chunk.len();
            if !overflow {
                if len > self.max {
                    overflow = true;
                    line = Vec::new();
                } else {
                    line.extend_from_slice(chunk);
                }
            }
            self.inner.consume(consumed);
            if done {
                return Ok(if overflow {
                    LineRead::TooLong { len }
                } else {
                    LineRead::Line(line)
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8], max: usize) -> Vec<LineRead> {
        let mut r = LineReader::new(input, max);
        let mut out = Vec::new();
        loop {
            let l = r.read_line().unwrap();
            let end = l == LineRead::Eof;
            out.push(l);
            if end {
                return out;
            }
        }
    }

    #[test]
    fn lines_and_limits() {
        assert_eq!(
            read_all(b"ab\n\ncd", 4),
            vec![
                LineRead::Line(b"ab".to_vec()),
                LineRead::Line(vec![]),
                LineRead::Line(b"cd".to_vec()),
                LineRead::Eof
            ]
        );
        assert_eq!(
            read_all(b"abcd\nabcde\nx\nyyyyyyyy", 4),
            vec![
                LineRead::Line(b"abcd".to_vec()),
                LineRead::TooLong { len: 5 },
                LineRead::Line(b"x".to_vec()),
                LineRead::TooLong { len: 8 },
                LineRead::Eof
            ]
        );
    }

    #[test]
    fn long_line_across_buffer_refills() {
        let mut input = vec![b'a'; 200_000];
        input.push(b'\n');
        input.extend_from_slice(b"ok\n");
        assert_eq!(
            read_all(&input, 1000),
            vec![
                LineRead::TooLong { len: 200_000 },
                LineRead::Line(b"ok".to_vec()),
                LineRead::Eof
            ]
        );
    }

    #[test]
    fn request_parsing() {
        let r = Request::parse(br#"{"id":7,"method":"net.list","params":{"a":1}}"#).unwrap();
        assert_eq!(r.id, json!(7));
        assert_eq!(r.method, "net.list");
        assert_eq!(r.params, json!({"a":1}));
        let r = Request::parse(br#"{"id":"x","method":"m"}"#).unwrap();
        assert_eq!(r.params, json!({}));

        let (id, e) = Request::parse(b"{nope").unwrap_err();
        assert_eq!((id, e.kind()), (Value::Null, Some(ErrorCode::ParseError)));
        let (id, e) = Request::parse(b"[1,2]").unwrap_err();
        assert_eq!(
            (id, e.kind()),
            (Value::Null, Some(ErrorCode::InvalidRequest))
        );
        let (id, e) = Request::parse(br#"{"id":3}"#).unwrap_err();
        assert_eq!((id, e.kind()), (json!(3), Some(ErrorCode::InvalidRequest)));
        let (id, e) = Request::parse(br#"{"id":4,"method":5}"#).unwrap_err();
        assert_eq!((id, e.kind()), (json!(4), Some(ErrorCode::InvalidRequest)));
        let (id, e) = Request::parse(br#"{"id":5,"method":"m","params":[1]}"#).unwrap_err();
        assert_eq!((id, e.kind()), (json!(5), Some(ErrorCode::InvalidRequest)));
    }

    #[test]
    fn response_roundtrip() {
        let line = response_line(&json!(1), Ok(json!({"x": [1, 2]})));
        assert_eq!(line.last(), Some(&b'\n'));
        let r = Response::parse(&line[..line.len() - 1]).unwrap();
        assert_eq!(r.id, json!(1));
        assert_eq!(r.result, Ok(json!({"x": [1, 2]})));

        let line = response_line(&json!("a"), Err(RpcError::with(ErrorCode::ReadOnly, "no")));
        let r = Response::parse(&line).unwrap();
        assert_eq!(r.result.unwrap_err().kind(), Some(ErrorCode::ReadOnly));
        assert!(Response::parse(br#"{"id":1}"#).is_err());
        assert!(
            Response::parse(br#"{"id":1,"result":1,"error":{"code":1,"message":""}}"#).is_err()
        );
    }

    #[test]
    fn codes_roundtrip() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_code(c.code()), Some(c));
        }
        assert_eq!(ErrorCode::from_code(12345), None);
    }
}
