//! The blocking client against a scripted peer: response matching, daemon
//! errors, broken responses, closed connections.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

use serde_json::{json, Value};
use virtnet_daemon::{Client, ClientError, ErrorCode};

/// A peer that reads one request per reply and answers with `replies[i]`
/// (with `{id}` replaced by the request's id); then closes.
fn scripted(
    replies: Vec<&'static str>,
) -> (
    tempfile::TempDir,
    PathBuf,
    std::thread::JoinHandle<Vec<Value>>,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sock");
    let l = UnixListener::bind(&path).unwrap();
    let t = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        let mut seen = Vec::new();
        for reply in replies {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap() == 0 {
                break;
            }
            let req: Value = serde_json::from_str(&line).unwrap();
            let out = reply.replace("{id}", &req["id"].to_string());
            seen.push(req);
            w.write_all(out.as_bytes()).unwrap();
        }
        seen
    });
    (dir, path, t)
}

#[test]
fn results_errors_and_request_shape() {
    let (_d, path, t) = scripted(vec![
        "{\"id\":{id},\"result\":{\"ok\":true}}\n",
        "{\"id\":{id},\"error\":{\"code\":1,\"message\":\"read only\"}}\n",
        "{\"id\":null,\"error\":{\"code\":2,\"message\":\"denied\"}}\n",
        "{\"id\":{id},\"result\":null}\n",
    ]);
    let mut c = Client::connect(&path).unwrap();
    assert_eq!(c.path(), path.as_path());
    assert_eq!(c.call("a.b", json!({"x": 1})).unwrap(), json!({"ok": true}));
    let e = c.call("c.d", Value::Null).unwrap_err();
    assert_eq!(e.remote().unwrap().kind(), Some(ErrorCode::ReadOnly));
    assert_eq!(e.to_string(), "read only (error code 1)");
    let e = c.call("e.f", json!({})).unwrap_err();
    assert_eq!(e.remote().unwrap().kind(), Some(ErrorCode::AccessDenied));
    assert_eq!(c.call("g.h", json!({})).unwrap(), Value::Null);
    let seen = t.join().unwrap();
    assert_eq!(
        seen,
        vec![
            json!({"id": 1, "method": "a.b", "params": {"x": 1}}),
            json!({"id": 2, "method": "c.d", "params": {}}),
            json!({"id": 3, "method": "e.f", "params": {}}),
            json!({"id": 4, "method": "g.h", "params": {}}),
        ]
    );
}

#[test]
fn broken_responses() {
    let (_d, path, _t) = scripted(vec![
        "{\"id\":99,\"result\":1}\n",
        "not json\n",
        "{\"id\":{id}}\n",
        "{\"id\":{id},\"error\":{\"code\":\"x\"}}\n",
    ]);
    let mut c = Client::connect(&path).unwrap();
    for want in [
        "does not match request id",
        "not JSON",
        "exactly one of",
        "malformed \"error\"",
    ] {
        match c.call("m", json!({})) {
            Err(ClientError::BadResponse { message, .. }) => {
                assert!(message.contains(want), "{message} vs {want}")
            }
            other => panic!("expected BadResponse({want}), got {other:?}"),
        }
    }
    // Peer is gone now.
    assert!(matches!(
        c.call("m", json!({})),
        Err(ClientError::Closed { .. } | ClientError::Io { .. })
    ));
}

#[test]
fn connect_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nothing-here");
    let e = Client::connect(&path).unwrap_err();
    assert!(matches!(e, ClientError::Connect { .. }));
    assert!(e.to_string().contains("nothing-here"), "{e}");
}

#[test]
fn from_stream_and_raw_lines() {
    let (a, b) = UnixStream::pair().unwrap();
    let mut c = Client::from_stream("pair".into(), a).unwrap();
    let t = std::thread::spawn(move || {
        let mut w = b.try_clone().unwrap();
        let mut r = BufReader::new(b);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        w.write_all(b"{\"id\":null,\"error\":{\"code\":-32700,\"message\":\"bad\"}}\n")
            .unwrap();
        line
    });
    c.send_raw(b"garbage\n").unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.id, Value::Null);
    assert_eq!(r.result.unwrap_err().kind(), Some(ErrorCode::ParseError));
    assert_eq!(t.join().unwrap(), "garbage\n");
}
