//! Blocking client for the virtnetd protocol.
//!
//! ```no_run
//! use virtnet_daemon::Client;
//! let mut c = Client::connect("/run/virtnet/virtnetd-admin-sock")?;
//! let status = c.call("daemon.status", serde_json::json!({}))?;
//! # Ok::<(), virtnet_daemon::ClientError>(())
//! ```

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use super::protocol::{LineRead, LineReader, Request, Response, RpcError, MAX_RESPONSE_BYTES};

/// What can go wrong on the client side.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to virtnetd at {path}: {source}")]
    Connect { path: PathBuf, source: io::Error },
    #[error("connection to virtnetd at {path} failed: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("virtnetd at {path} closed the connection")]
    Closed { path: PathBuf },
    #[error("virtnetd at {path} sent an unusable response: {message}")]
    BadResponse { path: PathBuf, message: String },
    #[error("virtnetd at {path} sent a response longer than {limit} bytes")]
    ResponseTooLarge { path: PathBuf, limit: usize },
    /// The daemon answered with an error.
    #[error("{0}")]
    Remote(RpcError),
}

impl ClientError {
    /// The daemon's error, when this is one.
    pub fn remote(&self) -> Option<&RpcError> {
        match self {
            ClientError::Remote(e) => Some(e),
            _ => None,
        }
    }
}

/// One connection to virtnetd; calls are sequential.
#[derive(Debug)]
pub struct Client {
    path: PathBuf,
    writer: UnixStream,
    reader: LineReader<UnixStream>,
    next_id: u64,
}

impl Client {
    /// Connect to the UNIX socket at `path`.
    pub fn connect(path: impl AsRef<Path>) -> Result<Client, ClientError> {
        let path = path.as_ref().to_path_buf();
        let stream = UnixStream::connect(&path).map_err(|source| ClientError::Connect {
            path: path.clone(),
            source,
        })?;
        Self::from_stream(path, stream)
    }

    /// Wrap an already-connected stream (`path` is used in messages).
    pub fn from_stream(path: PathBuf, stream: UnixStream) -> Result<Client, ClientError> {
        let writer = stream.try_clone().map_err(|source| ClientError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Client {
            path,
            writer,
            reader: LineReader::new(stream, MAX_RESPONSE_BYTES),
            next_id: 1,
        })
    }

    /// Socket path this client talks to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Give up on a response after `timeout` (None: wait forever).
    pub fn set_timeout(&self, timeout: Option<Duration>) -> Result<(), ClientError> {
        let io = |source| ClientError::Io {
            path: self.path.clone(),
            source,
        };
        self.writer.set_read_timeout(timeout).map_err(io)?;
        self.writer.set_write_timeout(timeout).map_err(io)
    }

    /// Call `method` with `params` (an object, or `null` for none) and wait
    /// for its result.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let params = if params.is_null() { json!({}) } else { params };
        let req = Request {
            id: json!(id),
            method: method.to_owned(),
            params,
        };
        self.send_raw(&req.to_line())?;
        let resp = self.read_response()?;
        match resp.id {
            Value::Number(ref n) if n.as_u64() == Some(id) => {}
            // The daemon answers unattributable failures (access denied at
            // connect, client limit) with a null id.
            Value::Null if resp.result.is_err() => {}
            other => {
                return Err(ClientError::BadResponse {
                    path: self.path.clone(),
                    message: format!("response id {other} does not match request id {id}"),
                })
            }
        }
        resp.result.map_err(ClientError::Remote)
    }

    /// Send raw bytes (tests use this to send malformed requests).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.writer
            .write_all(bytes)
            .and_then(|()| self.writer.flush())
            .map_err(|source| ClientError::Io {
                path: self.path.clone(),
                source,
            })
    }

    /// Read one response line.
    pub fn read_response(&mut self) -> Result<Response, ClientError> {
        match self.reader.read_line() {
            Ok(LineRead::Line(line)) => {
                Response::parse(&line).map_err(|message| ClientError::BadResponse {
                    path: self.path.clone(),
                    message,
                })
            }
            Ok(LineRead::TooLong { .. }) => Err(ClientError::ResponseTooLarge {
                path: self.path.clone(),
                limit: MAX_RESPONSE_BYTES,
            }),
            Ok(LineRead::Eof) => Err(ClientError::Closed {
                path: self.path.clone(),
            }),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Err(ClientError::Closed {
                path: self.path.clone(),
            }),
            Err(source) => Err(ClientError::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }
}
