//! Config and status stores: persistent definitions (`CONFIG_DIR/NAME.xml`
//! plus `CONFIG_DIR/autostart/NAME.xml` links, [`ConfigStore`]), live status
//! files (`STATE_DIR/NAME.xml`, libvirt's `<networkstatus>` documents,
//! [`StatusStore`], [`format_status`] / [`parse_status`]) and the driver
//! configuration file `network.conf` ([`read_network_conf`]:
//! `firewall_backend`, `firewall_layout`).
//!
//! Architecture invariant 7 ("nothing is lost"): every file written here goes
//! through [`atomic_write`] (or [`atomic_write_all`] for the several dnsmasq
//! files of a start: one directory fsync after all the renames) — a fresh
//! temporary file in the same directory, created `O_CREAT | O_EXCL |
//! O_NOFOLLOW` (a symbolic link planted at the temporary name is never
//! written through; the next name is tried), `fsync`, `rename` over the
//! target, `fsync` of the directory — so a crash leaves either the old or the
//! new content, never a torn file. Modes are exact, whatever the umask
//! ([`PRIVATE_FILE_MODE`], [`SHARED_FILE_MODE`] for the hosts files dnsmasq
//! re-reads after dropping privileges, [`create_dir_all_mode`] for
//! directories); [`open_lock_file`] opens `driver.lock` 0600, never through a
//! symbolic link, and refuses one another user owns.
//!
//! [`WriteGate`] is the test seam in front of the driver's state-directory
//! writes (journal, status files, dnsmasq files): a fault plan can make
//! writes to matching paths fail with an errno, as a full or failing disk
//! would. It is `None` in a real configuration (one branch per write).
//!
//! The formats are libvirt 11.3.0's, so files we write can be read by
//! libvirt and files libvirt wrote (including 9.0.0's status files without a
//! `<firewall>` element, and bare `<network>` status files) can be read
//! here. Status files are read with quick-xml's reader, one pass over the
//! root's children; the contents of `<network>` and `<firewall>` go to their
//! own positioned parsers ([`crate::netxml`], [`crate::firewall::xml`]), so
//! every error names the file, line and column.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::firewall::{Backend, Firewall};
use crate::netxml::{self, FormatFlags, NetworkDef};

/// Asked before every write of the driver's state directory (journal
/// entries, status files, dnsmasq configuration and hosts files): an
/// `Err` fails that write with this error before anything is written, as a
/// full disk (`ENOSPC`), an I/O error (`EIO`) or a read-only file system
/// (`EROFS`) would. The test seam of injected write failures
/// (`virtnet_testkit::Fault::WriteFails`, set as
/// [`crate::driver::DriverConfig::write_gate`]); [`WriteGate::open`] (the
/// default) lets every write through at the cost of one branch.
#[derive(Clone, Default)]
pub struct WriteGate(Option<std::sync::Arc<WriteCheck>>);

/// The function behind a [`WriteGate`]: the path about to be written.
pub type WriteCheck = dyn Fn(&Path) -> io::Result<()> + Send + Sync;

impl WriteGate {
    /// Every write goes through (the real configuration).
    pub fn open() -> Self {
        WriteGate(None)
    }

    /// Every write is first checked by `check`.
    pub fn new(check: std::sync::Arc<WriteCheck>) -> Self {
        WriteGate(Some(check))
    }

    /// May `path` be written? (Always `Ok` for [`WriteGate::open`].)
    #[inline]
    pub fn check(&self, path: &Path) -> io::Result<()> {
        match &self.0 {
            None => Ok(()),
            Some(f) => f(path),
        }
    }
}

impl std::fmt::Debug for WriteGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "WriteGate(checked)"
        } else {
            "WriteGate(open)"
        })
    }
}

/// The name libvirt gives the saved removal plan in a status file.
pub const FW_REMOVAL_NAME: &str = "fwRemoval";

/// Why reading or writing a config/status file failed: which file, and why.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}", at(.path, .source.line().zip(.source.column()), &format!("invalid network definition: {}", .source.detail())))]
    Network {
        path: PathBuf,
        #[source]
        source: netxml::NetXmlError,
    },
    #[error("{path}: invalid <firewall> element: {source}")]
    Firewall {
        path: PathBuf,
        #[source]
        source: crate::firewall::FirewallXmlError,
    },
    #[error("{}", at(.path, .line.map(|l| (l, 1)), .message))]
    Format {
        path: PathBuf,
        /// 1-based line the problem starts on, when known.
        line: Option<usize>,
        message: String,
    },
    #[error("Network config filename '{path}' does not match network name '{name}'")]
    NameMismatch { path: PathBuf, name: String },
}

/// `FILE:LINE:COL: message` (`FILE: message` without a position): the one
/// form of every error that points into a file.
fn at(path: &Path, pos: Option<(usize, usize)>, message: &str) -> String {
    match pos {
        Some((l, c)) => format!("{}:{l}:{c}: {message}", path.display()),
        None => format!("{}: {message}", path.display()),
    }
}

impl StatusError {
    fn io(path: &Path, source: io::Error) -> Self {
        StatusError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    fn format(path: &Path, message: impl Into<String>) -> Self {
        StatusError::Format {
            path: path.to_path_buf(),
            line: None,
            message: message.into(),
        }
    }
    fn format_at(path: &Path, line: usize, message: impl Into<String>) -> Self {
        StatusError::Format {
            path: path.to_path_buf(),
            line: Some(line),
            message: message.into(),
        }
    }
}

/// Mode of the files only the driver reads: definitions, status files,
/// the dnsmasq configuration (dnsmasq reads it as root, before it drops
/// its privileges), journals.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode of the files dnsmasq re-reads after dropping its privileges to
/// its `--user` (nobody by default): the DHCP hosts file and the
/// additional hosts file. libvirt creates them with `fopen`, 0644 under
/// the usual umask 022.
pub const SHARED_FILE_MODE: u32 = 0o644;
/// Mode of directories others may read and traverse (the state directory:
/// dnsmasq, running as nobody, reads its hosts files below it).
pub const STATE_DIR_MODE: u32 = 0o755;
/// Mode of directories only the driver may read (the config directory of
/// persistent definitions, like libvirt's /etc/libvirt).
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Creates `dir` and its missing parents. The directories this call
/// creates get exactly `mode` (the last one) and [`STATE_DIR_MODE`] (its
/// parents), whatever the process umask; directories that exist are left
/// as they are. A path component that exists but is not a directory is an
/// error.
pub fn create_dir_all_mode(dir: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let mut missing: Vec<&Path> = Vec::new();
    let mut p = dir;
    loop {
        match fs::metadata(p) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a directory", p.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing.push(p);
                match p.parent() {
                    Some(up) if !up.as_os_str().is_empty() => p = up,
                    _ => break,
                }
            }
            Err(e) => return Err(e),
        }
    }
    for (i, d) in missing.iter().enumerate().rev() {
        let m = if i == 0 { mode } else { STATE_DIR_MODE };
        match fs::DirBuilder::new().mode(m).create(d) {
            // The umask may have taken bits away: set exactly `m`.
            Ok(()) => fs::set_permissions(d, fs::Permissions::from_mode(m))?,
            // Created meanwhile by someone else: leave it as it is.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Opens (creating it if needed) a lock file that only this user can open:
/// mode 0600 whatever the umask, never through a symbolic link, and owned
/// by the effective user (a lock file planted by another user is refused:
/// whoever can open a file can `flock` it and stop the driver from taking
/// its lock). The parent directory must exist.
pub fn open_lock_file(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::MetadataExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(PRIVATE_FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is owned by uid {}, not by uid {me}: refusing to use it as a lock",
                path.display(),
                meta.uid()
            ),
        ));
    }
    if meta.mode() & 0o7777 != PRIVATE_FILE_MODE {
        f.set_permissions(fs::Permissions::from_mode(PRIVATE_FILE_MODE))?;
    }
    Ok(f)
}

/// Writes `data` to `path` atomically with mode 0600: temporary file in the
/// same directory, fsync, rename, fsync of the directory. The directory is
/// created (0755) if missing.
pub fn atomic_write(path: &Path, data: &[u8]) -> io::Result<()> {
    atomic_write_mode(path, data, PRIVATE_FILE_MODE)
}

/// [`atomic_write`] with the file mode `mode` (exactly, whatever the umask).
pub fn atomic_write_mode(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let dir = replace_file(path, data, mode, STATE_DIR_MODE)?;
    // Make the rename itself durable.
    fs::File::open(&dir)?.sync_all()
}

/// [`atomic_write`] of several files, with one fsync per directory after
/// all the renames (instead of one per file): when it returns, every file
/// is durable. On an error, the files before the failing one may already
/// be replaced; the error names the path.
pub fn atomic_write_all(files: &[(&Path, &[u8])]) -> Result<(), (PathBuf, io::Error)> {
    let files: Vec<(&Path, &[u8], u32)> = files
        .iter()
        .map(|(p, d)| (*p, *d, PRIVATE_FILE_MODE))
        .collect();
    atomic_write_all_modes(&files)
}

/// [`atomic_write_all`] with a mode per file.
pub fn atomic_write_all_modes(files: &[(&Path, &[u8], u32)]) -> Result<(), (PathBuf, io::Error)> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for (path, data, mode) in files {
        let dir =
            replace_file(path, data, *mode, STATE_DIR_MODE).map_err(|e| (path.to_path_buf(), e))?;
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    for dir in dirs {
        fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| (dir.clone(), e))?;
    }
    Ok(())
}

/// The writer's pid of a temporary name [`create_temp`] makes
/// (`.NAME.tmpPID` or `.NAME.tmpPID.K`), `None` for any other name.
fn temp_writer(file_name: &str) -> Option<i32> {
    let rest = file_name.strip_prefix('.')?;
    let (name, tail) = rest.rsplit_once(".tmp")?;
    if name.is_empty() {
        return None;
    }
    let pid = match tail.split_once('.') {
        Some((pid, k)) if !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()) => pid,
        Some(_) => return None,
        None => tail,
    };
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok().filter(|p: &i32| *p > 0)
}

/// Removes the temporary files of atomic writes ([`atomic_write`] and
/// friends) in `dir` whose writer is gone: a process killed between
/// creating its temporary file and renaming it leaves `.NAME.tmpPID`
/// behind, which nothing else would ever remove. A file whose writer pid
/// is alive (kill(pid, 0) is not ESRCH) is left alone: that write may be
/// in progress. Returns the files removed; a directory that cannot be read
/// has none.
pub fn remove_stale_temps(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return removed;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(temp_writer) else {
            continue;
        };
        let gone = matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        );
        let is_file = e.file_type().is_ok_and(|t| t.is_file());
        if gone && is_file && fs::remove_file(e.path()).is_ok() {
            removed.push(e.path());
        }
    }
    removed
}

/// How many temporary names [`replace_file`] tries before giving up.
const TEMP_NAME_TRIES: u32 = 16;

/// Creates a new temporary file beside `path`: `O_CREAT | O_EXCL |
/// O_NOFOLLOW`, so whatever already sits at the temporary name (a stale
/// file, a symbolic link someone planted) is never opened or written
/// through; the next name is tried instead. The mode is set exactly (the
/// umask does not apply).
fn create_temp(
    dir: &Path,
    file_name: &std::ffi::OsStr,
    mode: u32,
) -> io::Result<(PathBuf, fs::File)> {
    let mut last = None;
    for k in 0..TEMP_NAME_TRIES {
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(file_name);
        tmp_name.push(format!(".tmp{}", std::process::id()));
        if k > 0 {
            tmp_name.push(format!(".{k}"));
        }
        let tmp = dir.join(tmp_name);
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
        {
            Ok(f) => {
                if let Err(e) = f.set_permissions(fs::Permissions::from_mode(mode)) {
                    let _ = fs::remove_file(&tmp);
                    return Err(e);
                }
                return Ok((tmp, f));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists)))
}

/// Temporary file, fsync, rename over `path`; returns the directory (whose
/// fsync makes the rename durable). The directory is created (`dir_mode`)
/// only when the temporary file cannot be created for lack of it.
fn replace_file(path: &Path, data: &[u8], mode: u32, dir_mode: u32) -> io::Result<PathBuf> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let (tmp, mut f) = match create_temp(&dir, file_name, mode) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            create_dir_all_mode(&dir, dir_mode)?;
            create_temp(&dir, file_name, mode)?
        }
        r => r?,
    };
    let result = (|| {
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| dir)
}

/// Removes a file; a missing file is not an error.
pub fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// libvirt's "shell safe" test for the name in the warning header.
fn shell_safe(s: &str) -> bool {
    !s.is_empty()
        && !s.contains("--")
        && !s
            .chars()
            .any(|c| c.is_whitespace() || "!\"#$&'()*;<>?[\\]^`{|}~".contains(c))
}

/// The warning comment libvirt puts before config and status files.
pub fn warning_header(def: &NetworkDef) -> String {
    let uuid = def.uuid.to_string();
    let who = if shell_safe(&def.name) {
        format!("  virsh net-edit {}\n", def.name)
    } else if shell_safe(&uuid) {
        format!("  virsh net-edit {uuid}\n")
    } else {
        "  virsh net-edit\n".to_string()
    };
    format!(
        "<!--\nWARNING: THIS IS AN AUTO-GENERATED FILE. CHANGES TO IT ARE LIKELY TO BE\n\
         OVERWRITTEN AND LOST. Changes to this xml configuration should be made using:\n\
         {who}or other application using the libvirt API.\n-->\n\n"
    )
}

/// The content of a persistent config file: header + inactive XML.
pub fn format_config(def: &NetworkDef) -> String {
    let mut s = warning_header(def);
    s.push_str(&netxml::format(def, FormatFlags::INACTIVE));
    s
}

/// A live status file: libvirt's `<networkstatus>` document.
#[derive(Debug, Clone)]
pub struct NetworkStatus {
    /// The live definition (formatted with flags 0).
    pub def: NetworkDef,
    /// `<class_id bitmap>` (QoS class ids; `0-2` for a fresh network).
    pub class_id: String,
    /// `<floor sum>`.
    pub floor_sum: u64,
    /// `<taint flag>` values.
    pub taints: Vec<String>,
    /// `<firewall name='fwRemoval'>`: the plan that removes exactly the rules
    /// this network added. `None` in files of libvirt ≤ 10.2 (9.0.0) or for
    /// networks without rules.
    pub fw_removal: Option<Firewall>,
    /// True when the file had a `<networkstatus>` root (false: a bare
    /// `<network>` file of an old release).
    pub has_status_root: bool,
}

impl NetworkStatus {
    /// Status of a freshly started network.
    pub fn new(def: NetworkDef, fw_removal: Option<Firewall>) -> Self {
        NetworkStatus {
            def,
            class_id: "0-2".to_string(),
            floor_sum: 0,
            taints: Vec::new(),
            fw_removal,
            has_status_root: true,
        }
    }

    /// The backend of the saved removal plan, if any.
    pub fn removal_backend(&self) -> Option<Backend> {
        self.fw_removal.as_ref().map(Firewall::backend)
    }
}

/// Formats a status file exactly like libvirt 11.3.0 (no trailing newline
/// after `</networkstatus>`).
pub fn format_status(st: &NetworkStatus) -> String {
    let mut s = warning_header(&st.def);
    s.push_str("<networkstatus>\n");
    s.push_str(&format!("  <class_id bitmap='{}'/>\n", st.class_id));
    s.push_str(&format!("  <floor sum='{}'/>\n", st.floor_sum));
    for t in &st.taints {
        let esc = netxml::format::escape_xml(t, netxml::format::Escape::Attribute);
        s.push_str(&format!("  <taint flag='{esc}'/>\n"));
    }
    // Indented as it is formatted (libvirt's virBufferAdjustIndent), not
    // line by line afterwards: that would also indent the lines of a
    // multi-line text value, which would then read back changed.
    s.push_str(&netxml::format_indented(&st.def, FormatFlags::LIVE, 2));
    if let Some(fw) = &st.fw_removal {
        s.push_str(&fw.format_xml(2));
    }
    s.push_str("</networkstatus>");
    s
}

/// Where the parts of a status document are, found by one quick-xml pass
/// over the root element and its children (the contents of `<network>`
/// and `<firewall>` are left to their own parsers, which report their
/// errors with positions).
#[derive(Debug, Default)]
struct StatusLayout {
    /// The root is `<networkstatus>` (else a bare `<network>`).
    has_status_root: bool,
    /// Byte range of the `<network>` element.
    network: Option<(usize, usize)>,
    /// `<class_id bitmap>`, `<floor sum>` (with its offset), `<taint flag>`s
    /// before the `<network>`.
    class_id: Option<String>,
    floor_sum: Option<(usize, String)>,
    taints: Vec<String>,
    /// Offset of the first `<firewall>` child after the `<network>`.
    firewall_at: Option<usize>,
}

/// One pass of quick-xml's reader over a status document: see
/// [`StatusLayout`].
fn scan_status(doc: &str, path: &Path) -> Result<StatusLayout, StatusError> {
    use quick_xml::events::{BytesStart, Event};
    use quick_xml::Reader;

    let mut reader = Reader::from_str(doc);
    // Mismatched end tags inside <network> are netxml's to report.
    reader.config_mut().check_end_names = false;
    let syntax = |at: u64, e: &dyn std::fmt::Display| {
        StatusError::format_at(path, line_of(doc, at as usize) + 1, e.to_string())
    };
    let attr = |e: &BytesStart<'_>, at: usize, name: &str| match e.try_get_attribute(name) {
        Ok(Some(a)) => a
            .unescape_value()
            .map(|v| Some(v.into_owned()))
            .map_err(|err| syntax(at as u64, &err)),
        Ok(None) => Ok(None),
        Err(err) => Err(syntax(at as u64, &err)),
    };
    let not_closed = || StatusError::format(path, "<network> element is not closed");
    let mut layout = StatusLayout::default();
    // The root element, after the prolog (declaration, comments, PIs).
    let (root_at, root, root_empty) = loop {
        let at = reader.buffer_position() as usize;
        match reader.read_event() {
            Ok(Event::Start(e)) => break (at, e, false),
            Ok(Event::Empty(e)) => break (at, e, true),
            Ok(Event::Text(t)) if t.iter().all(u8::is_ascii_whitespace) => {}
            Ok(Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_)) => {}
            Ok(_) => return Err(expected_root(doc, at, path)),
            Err(e) => return Err(syntax(reader.error_position(), &e)),
        }
    };
    match root.name().as_ref() {
        b"network" => {
            if !root_empty {
                reader.read_to_end(root.name()).map_err(|_| not_closed())?;
            }
            layout.network = Some((root_at, reader.buffer_position() as usize));
            return Ok(layout);
        }
        b"networkstatus" if !root_empty => layout.has_status_root = true,
        b"networkstatus" => {
            layout.has_status_root = true;
            return Ok(layout);
        }
        _ => return Err(expected_root(doc, root_at, path)),
    }
    // The children of <networkstatus>.
    loop {
        let at = reader.buffer_position() as usize;
        let (e, empty) = match reader.read_event() {
            Ok(Event::Start(e)) => (e, false),
            Ok(Event::Empty(e)) => (e, true),
            Ok(Event::End(_) | Event::Eof) => break,
            Ok(_) => continue,
            Err(err) => return Err(syntax(reader.error_position(), &err)),
        };
        let before_network = layout.network.is_none();
        match e.name().as_ref() {
            b"network" if before_network => {
                if !empty {
                    reader.read_to_end(e.name()).map_err(|_| not_closed())?;
                }
                layout.network = Some((at, reader.buffer_position() as usize));
                continue;
            }
            b"firewall" if !before_network => {
                layout.firewall_at = Some(at);
                break;
            }
            b"class_id" if before_network && layout.class_id.is_none() => {
                layout.class_id = attr(&e, at, "bitmap")?;
            }
            b"floor" if before_network && layout.floor_sum.is_none() => {
                layout.floor_sum = attr(&e, at, "sum")?.map(|v| (at, v));
            }
            b"taint" if before_network => layout.taints.extend(attr(&e, at, "flag")?),
            _ => {}
        }
        if !empty {
            reader
                .read_to_end(e.name())
                .map_err(|err| syntax(reader.error_position(), &err))?;
        }
    }
    Ok(layout)
}

fn expected_root(doc: &str, at: usize, path: &Path) -> StatusError {
    StatusError::format_at(
        path,
        line_of(doc, at) + 1,
        "expected root element <networkstatus> or <network>",
    )
}

fn line_of(doc: &str, offset: usize) -> usize {
    doc[..offset.min(doc.len())].matches('\n').count()
}

/// Parses a status file (libvirt 9.0.0 and 11.3.0 formats, and bare
/// `<network>` files). `path` is used in error messages only.
pub fn parse_status(doc: &str, path: &Path) -> Result<NetworkStatus, StatusError> {
    let layout = scan_status(doc, path)?;
    let (net_at, net_end) = layout
        .network
        .ok_or_else(|| StatusError::format(path, "no <network> element"))?;
    let def = netxml::parse(&doc[net_at..net_end]).map_err(|mut e| {
        // Report positions relative to the whole file.
        let shift = line_of(doc, net_at);
        if let Some(loc) = e.location.as_mut() {
            if loc.line != 0 {
                if loc.line == 1 {
                    let col0 = net_at - doc[..net_at].rfind('\n').map(|p| p + 1).unwrap_or(0);
                    loc.column += col0;
                }
                loc.line += shift;
            }
        }
        StatusError::Network {
            path: path.to_path_buf(),
            source: e,
        }
    })?;
    let mut st = NetworkStatus::new(def, None);
    st.has_status_root = layout.has_status_root;
    if !layout.has_status_root {
        return Ok(st);
    }
    if let Some(bitmap) = layout.class_id {
        st.class_id = bitmap;
    }
    if let Some((at, v)) = layout.floor_sum {
        st.floor_sum = v.parse().map_err(|_| {
            StatusError::format_at(
                path,
                line_of(doc, at) + 1,
                format!("invalid floor sum '{v}'"),
            )
        })?;
    }
    st.taints = layout.taints;
    // Only the first <firewall> child of the root is looked at, and only
    // when it is named fwRemoval.
    if let Some(at) = layout.firewall_at {
        let (fw, _) = Firewall::parse_xml_at(doc, at).map_err(|source| StatusError::Firewall {
            path: path.to_path_buf(),
            source,
        })?;
        if fw.name() == Some(FW_REMOVAL_NAME) {
            st.fw_removal = Some(fw);
        }
    }
    Ok(st)
}

/// Persistent definitions and autostart links (`CONFIG_DIR/NAME.xml`,
/// `CONFIG_DIR/autostart/NAME.xml`).
#[derive(Debug, Clone)]
pub struct ConfigStore {
    pub dir: PathBuf,
}

impl ConfigStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ConfigStore { dir: dir.into() }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.xml"))
    }

    pub fn autostart_dir(&self) -> PathBuf {
        self.dir.join("autostart")
    }

    pub fn autostart_link(&self, name: &str) -> PathBuf {
        self.autostart_dir().join(format!("{name}.xml"))
    }

    /// Saves a definition (inactive form, atomically).
    pub fn save(&self, def: &NetworkDef) -> Result<(), StatusError> {
        let path = self.path(&def.name);
        replace_file(
            &path,
            format_config(def).as_bytes(),
            PRIVATE_FILE_MODE,
            PRIVATE_DIR_MODE,
        )
        .and_then(|dir| fs::File::open(dir)?.sync_all())
        .map_err(|e| StatusError::io(&path, e))
    }

    /// Loads one definition file.
    pub fn load_file(path: &Path) -> Result<NetworkDef, StatusError> {
        let text = fs::read_to_string(path).map_err(|e| StatusError::io(path, e))?;
        let def = netxml::parse(&text).map_err(|source| StatusError::Network {
            path: path.to_path_buf(),
            source,
        })?;
        check_file_name(path, &def)?;
        Ok(def)
    }

    /// Every `*.xml` in the directory, each loaded or with its error.
    pub fn load_all(&self) -> Vec<(PathBuf, Result<NetworkDef, StatusError>)> {
        xml_files(&self.dir)
            .into_iter()
            .map(|p| {
                let r = Self::load_file(&p);
                (p, r)
            })
            .collect()
    }

    pub fn remove(&self, name: &str) -> Result<(), StatusError> {
        let path = self.path(name);
        remove_if_exists(&path).map_err(|e| StatusError::io(&path, e))
    }

    /// True iff the autostart link resolves to the config file.
    pub fn is_autostart(&self, name: &str) -> bool {
        let link = self.autostart_link(name);
        match (fs::canonicalize(&link), fs::canonicalize(self.path(name))) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }

    /// Creates or removes the autostart link (target: absolute config path).
    pub fn set_autostart(&self, name: &str, on: bool) -> Result<(), StatusError> {
        let link = self.autostart_link(name);
        if on {
            let dir = self.autostart_dir();
            create_dir_all_mode(&dir, PRIVATE_DIR_MODE).map_err(|e| StatusError::io(&dir, e))?;
            let target = std::path::absolute(self.path(name))
                .map_err(|e| StatusError::io(&self.path(name), e))?;
            remove_if_exists(&link).map_err(|e| StatusError::io(&link, e))?;
            std::os::unix::fs::symlink(&target, &link).map_err(|e| StatusError::io(&link, e))
        } else {
            match fs::remove_file(&link) {
                Err(e)
                    if e.kind() != io::ErrorKind::NotFound
                        && e.raw_os_error() != Some(libc::ENOTDIR) =>
                {
                    Err(StatusError::io(&link, e))
                }
                _ => Ok(()),
            }
        }
    }
}

/// Live status files (`STATE_DIR/NAME.xml`).
#[derive(Debug, Clone)]
pub struct StatusStore {
    pub dir: PathBuf,
    gate: WriteGate,
}

impl StatusStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StatusStore {
            dir: dir.into(),
            gate: WriteGate::open(),
        }
    }

    /// The same store with its writes checked by `gate`.
    pub fn with_gate(mut self, gate: WriteGate) -> Self {
        self.gate = gate;
        self
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.xml"))
    }

    /// Writes the status file atomically.
    pub fn save(&self, st: &NetworkStatus) -> Result<(), StatusError> {
        let path = self.path(&st.def.name);
        self.gate
            .check(&path)
            .and_then(|()| atomic_write(&path, format_status(st).as_bytes()))
            .map_err(|e| StatusError::io(&path, e))
    }

    pub fn load_file(path: &Path) -> Result<NetworkStatus, StatusError> {
        let text = fs::read_to_string(path).map_err(|e| StatusError::io(path, e))?;
        let st = parse_status(&text, path)?;
        check_file_name(path, &st.def)?;
        Ok(st)
    }

    pub fn load(&self, name: &str) -> Result<Option<NetworkStatus>, StatusError> {
        let path = self.path(name);
        if !path.exists() {
            return Ok(None);
        }
        Self::load_file(&path).map(Some)
    }

    /// Every `*.xml` status file, each loaded or with its error.
    pub fn load_all(&self) -> Vec<(PathBuf, Result<NetworkStatus, StatusError>)> {
        xml_files(&self.dir)
            .into_iter()
            .map(|p| {
                let r = Self::load_file(&p);
                (p, r)
            })
            .collect()
    }

    pub fn remove(&self, name: &str) -> Result<(), StatusError> {
        let path = self.path(name);
        remove_if_exists(&path).map_err(|e| StatusError::io(&path, e))
    }
}

fn check_file_name(path: &Path, def: &NetworkDef) -> Result<(), StatusError> {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if stem != def.name {
        return Err(StatusError::NameMismatch {
            path: path.to_path_buf(),
            name: def.name.clone(),
        });
    }
    Ok(())
}

/// Regular `*.xml` files of a directory, sorted by name (missing dir: none).
fn xml_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "xml")
                && !p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------
// network.conf

/// The driver configuration file (`network.conf`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkConf {
    /// `firewall_backend = "iptables" | "nftables" | "none"`; `None` when
    /// unset (auto-detection).
    pub firewall_backend: Option<Backend>,
    /// Line of the `firewall_backend` setting (1-based), for messages.
    pub firewall_backend_line: Option<usize>,
    /// `firewall_layout = "libvirt" | "batched"` (virtnet's own setting,
    /// see [`crate::rules::batched`]); `None` when unset (libvirt's).
    pub firewall_layout: Option<crate::rules::batched::Layout>,
}

/// A `network.conf` that cannot be used: file, line, column and what is
/// wrong (`FILE:LINE:COL: message`; `FILE: message` when the file cannot
/// be read, line 0).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", at(.path, (*.line > 0).then_some((*.line, *.column)), .message))]
pub struct ConfError {
    pub path: PathBuf,
    pub line: usize,
    /// 1-based column (in characters) of the key or value at fault.
    pub column: usize,
    pub message: String,
}

/// Parses `network.conf` text (libvirt's virConf syntax: `key = value`
/// lines, `#` comments, string/number/list values). Only
/// `firewall_backend` and `firewall_layout` are interpreted; other keys are accepted and ignored.
pub fn parse_network_conf(text: &str, path: &Path) -> Result<NetworkConf, ConfError> {
    let err = |(line, column): (usize, usize), message: String| ConfError {
        path: path.to_path_buf(),
        line,
        column,
        message,
    };
    let mut conf = NetworkConf::default();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((n, raw)) = lines.next() {
        let lineno = n + 1;
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        // Columns: where the key starts, and where the value starts.
        let indent = raw.chars().take_while(|c| c.is_whitespace()).count();
        let key_at = (lineno, indent + 1);
        let Some((key, value)) = line.split_once('=') else {
            return Err(err(key_at, format!("expecting '=' in \"{line}\"")));
        };
        let value_at = (
            lineno,
            indent
                + key.chars().count()
                + 1
                + value.chars().take_while(|c| c.is_whitespace()).count()
                + 1,
        );
        let key = key.trim();
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
            || key.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(err(key_at, format!("invalid setting name '{key}'")));
        }
        let mut value = value.trim().to_string();
        if value.starts_with('[') {
            // Lists may span lines.
            while !strip_comment(&value).trim_end().ends_with(']') {
                match lines.next() {
                    Some((_, more)) => {
                        value.push(' ');
                        value.push_str(strip_comment(more).trim());
                    }
                    None => return Err(err(value_at, "unterminated list".to_string())),
                }
            }
        }
        let parsed = parse_conf_value(&value).map_err(|m| err(value_at, m))?;
        if key == "firewall_backend" {
            let ConfValue::Str(s) = parsed else {
                return Err(err(
                    value_at,
                    "firewall_backend must be a string, e.g. firewall_backend = \"nftables\""
                        .to_string(),
                ));
            };
            let b = s.parse::<Backend>().map_err(|_| {
                err(
                    value_at,
                    format!(
                        "unrecognized firewall_backend = '{s}' set in network driver config file {}",
                        path.display()
                    ),
                )
            })?;
            conf.firewall_backend = Some(b);
            conf.firewall_backend_line = Some(lineno);
        } else if key == "firewall_layout" {
            let ConfValue::Str(s) = parsed else {
                return Err(err(
                    value_at,
                    "firewall_layout must be a string, e.g. firewall_layout = \"batched\""
                        .to_string(),
                ));
            };
            let l = s.parse::<crate::rules::batched::Layout>().map_err(|_| {
                err(
                    value_at,
                    format!(
                        "unrecognized firewall_layout = '{s}' (expected \"libvirt\" or \"batched\")"
                    ),
                )
            })?;
            conf.firewall_layout = Some(l);
        }
    }
    Ok(conf)
}

/// Reads `network.conf`; a missing file is the default configuration.
pub fn read_network_conf(path: &Path) -> Result<NetworkConf, ConfError> {
    match fs::read_to_string(path) {
        Ok(t) => parse_network_conf(&t, path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(NetworkConf::default()),
        Err(e) => Err(ConfError {
            path: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read: {e}"),
        }),
    }
}

enum ConfValue {
    Str(String),
    Other,
}

/// Text before a `#` that is not inside quotes.
fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' => return &line[..i],
            None => {}
        }
    }
    line
}

fn parse_conf_value(v: &str) -> Result<ConfValue, String> {
    let v = v.trim();
    if v.is_empty() {
        return Err("expecting a value".to_string());
    }
    let first = v.chars().next().unwrap_or(' ');
    if first == '"' || first == '\'' {
        let inner = &v[1..];
        let Some(end) = inner.find(first) else {
            return Err("unterminated string".to_string());
        };
        if !inner[end + 1..].trim().is_empty() {
            return Err(format!(
                "unexpected text after string: '{}'",
                &inner[end + 1..]
            ));
        }
        return Ok(ConfValue::Str(inner[..end].to_string()));
    }
    if first == '[' {
        if !v.ends_with(']') {
            return Err("unterminated list".to_string());
        }
        for item in v[1..v.len() - 1].split(',') {
            let item = item.trim();
            if !item.is_empty() {
                parse_conf_value(item)?;
            }
        }
        return Ok(ConfValue::Other);
    }
    if v.strip_prefix('-')
        .unwrap_or(v)
        .chars()
        .all(|c| c.is_ascii_digit())
    {
        return Ok(ConfValue::Other);
    }
    Err(format!("expecting a value, got '{v}'"))
}

#[cfg(test)]
mod tests;
