//! `virtnet net-event`: virsh's `net-event` against a running virtnetd.
//!
//! Subscribes with the daemon's `net.events` request (see
//! `virtnet_daemon::net_events`) and prints each lifecycle event as virsh
//! 11.3.0 does — `event 'lifecycle' for network NAME: Started` (with
//! `--timestamp`, prefixed by libvirt's UTC timestamp `YYYY-MM-DD
//! HH:MM:SS.mmm+0000: `) — then, when the wait ends, `event loop timed
//! out` (`--timeout`) or `event loop interrupted` (Ctrl-C) and `events
//! received: N`. Without `--loop` the first event ends the wait. The exit
//! status is virsh's: 0 when at least one event was received, else 1.
//! `--list` prints the event types; `--event` is required otherwise, as in
//! virsh 11.3.0.
//!
//! Beyond virsh: `--json` prints each event as the daemon's JSON line
//! (`{"event":"lifecycle","name":..,"uuid":..,"kind":"started","code":2}`)
//! and nothing else.
//!
//! Events exist only in a daemon: without `--connect` the command is
//! refused with a message naming it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use virtnet_daemon::protocol::{Request, Response};
use virtnet_daemon::SocketKind;

use crate::client::ConnectUri;

/// `net-event`'s options: virsh's, and `--json`.
#[derive(Debug, Clone, clap::Args)]
pub struct EventArgs {
    /// Filter by network name or uuid
    pub network: Option<String>,
    /// Which event type to wait for (lifecycle, metadata-change)
    #[arg(long)]
    pub event: Option<String>,
    /// Loop until timeout or interrupt, rather than one-shot
    #[arg(long = "loop")]
    pub loop_: bool,
    /// Timeout seconds
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<String>,
    /// List valid event types
    #[arg(long)]
    pub list: bool,
    /// Show timestamp for each printed event
    #[arg(long)]
    pub timestamp: bool,
    /// Print each event as a JSON line (the daemon's), nothing else
    #[arg(long)]
    pub json: bool,
}

const EVENT_TYPES: &[&str] = virtnet_daemon::net_events::EVENT_TYPES;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// virsh's word for a lifecycle event kind.
fn virsh_word(kind: &str) -> &'static str {
    match kind {
        "defined" => "Defined",
        "undefined" => "Undefined",
        "started" => "Started",
        "stopped" => "Stopped",
        _ => "unknown",
    }
}

/// libvirt's virTimeStringNowRaw: UTC, milliseconds, "+0000".
fn timestamp_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let ms = now.as_millis() as u64;
    let secs = ms / 1000;
    let (days, rem) = (secs / 86400, secs % 86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:4}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}+0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// The line virsh prints for one event.
pub fn virsh_line(name: &str, kind: &str, timestamp: Option<&str>) -> String {
    let body = format!(
        "event 'lifecycle' for network {name}: {}\n",
        virsh_word(kind)
    );
    match timestamp {
        Some(t) => format!("{t}: {body}"),
        None => body,
    }
}

/// Reads lines from the daemon without losing a partial line to a read
/// timeout.
struct Lines {
    stream: UnixStream,
    buf: Vec<u8>,
}

enum Got {
    Line(Vec<u8>),
    Nothing,
    Closed,
}

impl Lines {
    fn next(&mut self, wait: Duration) -> std::io::Result<Got> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Ok(Got::Line(line[..i].to_vec()));
            }
            self.stream
                .set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(Got::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) =>
                {
                    return Ok(Got::Nothing)
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Runs `net-event`; prints as it goes.
pub fn run(uri: Option<&ConnectUri>, args: EventArgs) -> ExitCode {
    match run_inner(uri, args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(msg) => {
            crate::out::err_line(&format!("error: {msg}"));
            ExitCode::from(1)
        }
    }
}

fn run_inner(uri: Option<&ConnectUri>, args: EventArgs) -> Result<bool, String> {
    if args.list {
        crate::out::print(
            &EVENT_TYPES
                .iter()
                .map(|t| format!("{t}\n"))
                .collect::<String>(),
        );
        return Ok(true);
    }
    let Some(event) = args.event.as_deref() else {
        return Err("either --list or --event <type> is required".into());
    };
    if !EVENT_TYPES.contains(&event) {
        return Err(format!(
            "unknown event type {}",
            crate::out::escape_value(event)
        ));
    }
    let timeout = match args.timeout.as_deref() {
        None => None,
        Some(t) => match t.parse::<u32>() {
            Ok(n) if n > 0 && n <= i32::MAX as u32 / 1000 => Some(Duration::from_secs(n.into())),
            _ => {
                return Err(format!(
                    "Numeric value '{}' for <timeout> option is malformed or out of range",
                    crate::out::escape_value(t)
                ))
            }
        },
    };
    let Some(uri) = uri else {
        return Err(format!(
            "net-event needs a running virtnetd: events exist only in the daemon; \
             run it with --connect unix:PATH (e.g. --connect {})",
            ConnectUri::default_for(SocketKind::ReadWrite)
        ));
    };
    let mut stream = UnixStream::connect(uri.path()).map_err(|e| {
        format!(
            "cannot connect to virtnetd at {}: {e}",
            uri.path().display()
        )
    })?;
    let req = Request {
        id: json!(1),
        method: virtnet_daemon::net_events::METHOD.to_string(),
        params: json!({ "event": event, "name": args.network }),
    };
    stream.write_all(&req.to_line()).map_err(|e| {
        format!(
            "connection to virtnetd at {} failed: {e}",
            uri.path().display()
        )
    })?;
    let mut lines = Lines {
        stream,
        buf: Vec::new(),
    };
    let closed = || format!("virtnetd at {} closed the connection", uri.path().display());
    // The answer to the subscription.
    match lines
        .next(Duration::from_secs(30))
        .map_err(|e| e.to_string())?
    {
        Got::Line(l) => {
            let r = Response::parse(&l).map_err(|m| {
                format!(
                    "virtnetd at {} sent an unusable response: {m}",
                    uri.path().display()
                )
            })?;
            r.result.map_err(|e| {
                if e.code >= 100 {
                    e.message
                } else {
                    format!("virtnetd: {}", e.message)
                }
            })?;
        }
        Got::Nothing => {
            return Err(format!(
                "virtnetd at {} did not answer",
                uri.path().display()
            ))
        }
        Got::Closed => return Err(closed()),
    }
    // SAFETY: the handler only stores into an atomic (async-signal-safe).
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
    }
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut count = 0u64;
    let ending = loop {
        if INTERRUPTED.load(Ordering::SeqCst) {
            break Some("event loop interrupted\n");
        }
        let mut wait = Duration::from_millis(200);
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Some("event loop timed out\n");
            }
            wait = wait.min(left);
        }
        match lines.next(wait).map_err(|e| e.to_string())? {
            Got::Nothing => continue,
            Got::Closed => return Err(closed()),
            Got::Line(l) => {
                let v: Value = serde_json::from_slice(&l).map_err(|e| {
                    format!(
                        "virtnetd at {} sent an unusable event: {e}",
                        uri.path().display()
                    )
                })?;
                if args.json {
                    crate::out::print(&format!("{v}\n"));
                } else {
                    let name = v["name"].as_str().unwrap_or("");
                    let kind = v["kind"].as_str().unwrap_or("");
                    let ts = args.timestamp.then(timestamp_now);
                    crate::out::print(&virsh_line(name, kind, ts.as_deref()));
                }
                count += 1;
                if !args.loop_ {
                    break None;
                }
            }
        }
    };
    if !args.json {
        let mut tail = ending.unwrap_or("").to_string();
        tail.push_str(&format!("events received: {count}\n"));
        crate::out::print(&tail);
    }
    Ok(count > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_virshs() {
        assert_eq!(
            virsh_line("default", "started", None),
            "event 'lifecycle' for network default: Started\n"
        );
        assert_eq!(
            virsh_line("n", "undefined", Some("2026-01-02 03:04:05.006+0000")),
            "2026-01-02 03:04:05.006+0000: event 'lifecycle' for network n: Undefined\n"
        );
        let t = timestamp_now();
        assert_eq!(t.len(), "2026-01-02 03:04:05.006+0000".len(), "{t}");
        assert!(t.ends_with("+0000") && t.as_bytes()[10] == b' ', "{t}");
    }
}
