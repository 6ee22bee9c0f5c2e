//! A minimal D-Bus client for the service manager, as systemd-sysext talks to it: over
//! the manager's private socket `/run/systemd/private` (what systemd's
//! `bus_connect_system_systemd()` uses as root: a direct peer-to-peer connection, so no
//! `Hello` and no dbus-daemon), `AUTH EXTERNAL` with our uid, then method calls on
//! `org.freedesktop.systemd1.Manager`. Only what extension-release's unit actions need
//! is here: `Reload()`, the `(ss)`-style unit job methods and `JobRemoved` signals.
//!
//! Everything read is bounded (line and message sizes, a deadline on every read) and
//! checked: a broken or hostile peer gives a [`BusError`], never a panic or a hang.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// The manager's private socket (systemd: `/run/systemd/private`).
pub const PRIVATE_SOCKET: &str = "/run/systemd/private";
/// How long a method call may take: sd-bus's default (`BUS_DEFAULT_TIMEOUT`).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(25);
/// How long `Reload()` may take: it answers only once the reload is done, which can
/// take long (generators, many units; well over 25 s in a slow VM). systemd's
/// `bus_service_manager_reload()` waits `DAEMON_RELOAD_TIMEOUT_SEC`, 6 minutes: so do we.
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(6 * 60);
/// Largest message accepted (the replies we want are a few hundred bytes).
const MAX_MESSAGE: usize = 1 << 20;
/// Longest SASL line accepted.
const MAX_LINE: usize = 512;

const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER_IFACE: &str = "org.freedesktop.systemd1.Manager";
const MANAGER_DEST: &str = "org.freedesktop.systemd1";

/// Message types (D-Bus specification, "Message Format").
const METHOD_CALL: u8 = 1;
const METHOD_RETURN: u8 = 2;
const ERROR: u8 = 3;
const SIGNAL: u8 = 4;

/// Why talking to the manager failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Connecting, reading or writing failed.
    #[error("{what}: {}", crate::log::os_text(.source))]
    Io {
        /// What was being done.
        what: &'static str,
        /// Why.
        source: io::Error,
    },
    /// The peer did not answer in time.
    #[error("timed out waiting for the service manager")]
    Timeout,
    /// The peer closed the connection.
    #[error("the service manager closed the connection")]
    Closed,
    /// The peer refused our authentication.
    #[error("authentication refused by the service manager: {0}")]
    Auth(String),
    /// The peer sent something that is not valid D-Bus (or not what the call returns).
    #[error("invalid message from the service manager: {0}")]
    Protocol(String),
    /// The call failed: a D-Bus error reply.
    #[error("{name}: {message}")]
    Remote {
        /// The D-Bus error name, e.g. `org.freedesktop.systemd1.NoSuchUnit`.
        name: String,
        /// Its message (may be empty).
        message: String,
    },
}

impl BusError {
    /// Is this the error reply `name`?
    pub fn is_remote(&self, name: &str) -> bool {
        matches!(self, BusError::Remote { name: n, .. } if n == name)
    }
}

fn proto<T>(why: impl Into<String>) -> Result<T, BusError> {
    Err(BusError::Protocol(why.into()))
}

/// A connection to the service manager.
pub struct Manager {
    sock: UnixStream,
    serial: u32,
    timeout: Duration,
    reload_timeout: Duration,
    /// `JobRemoved` signals seen while waiting for replies: (job path, result).
    removed: Vec<(String, String)>,
}

impl Manager {
    /// Connects to the system manager's private socket.
    pub fn connect() -> Result<Manager, BusError> {
        let mut m = Manager::connect_at(Path::new(PRIVATE_SOCKET), CALL_TIMEOUT)?;
        m.reload_timeout = RELOAD_TIMEOUT;
        Ok(m)
    }

    /// Connects to a manager listening at `path` and authenticates.
    fn connect_at(path: &Path, timeout: Duration) -> Result<Manager, BusError> {
        let sock = UnixStream::connect(path).map_err(|source| BusError::Io {
            what: "cannot connect to the service manager",
            source,
        })?;
        let mut m = Manager {
            sock,
            serial: 0,
            timeout,
            reload_timeout: timeout,
            removed: Vec::new(),
        };
        m.auth()?;
        Ok(m)
    }

    /// SASL `EXTERNAL`: the peer checks our credentials on the socket; the identity
    /// sent is our uid as a decimal string, hex-encoded. `BEGIN` goes with `AUTH`, as
    /// sd-bus sends it: the first message then reaches the manager a round trip after
    /// `BEGIN`. Sent right behind `BEGIN`, it could arrive in the same read as `BEGIN`,
    /// which sd-bus leaves unprocessed until the socket is readable again (seen with
    /// systemd 252 and 262: `Reload()` answered only once we hung up).
    fn auth(&mut self) -> Result<(), BusError> {
        let deadline = Instant::now() + self.timeout;
        let uid = rustix::process::getuid().as_raw().to_string();
        let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
        self.send(format!("\0AUTH EXTERNAL {hex}\r\nBEGIN\r\n").as_bytes())?;
        let line = self.read_line(deadline)?;
        match line.strip_prefix("OK ") {
            Some(guid) if !guid.is_empty() && guid.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(()),
            _ => Err(BusError::Auth(line.escape_debug().to_string())),
        }
    }

    /// One `\r\n`-terminated line, read byte by byte so nothing after it is consumed.
    fn read_line(&mut self, deadline: Instant) -> Result<String, BusError> {
        let mut line = Vec::new();
        while !line.ends_with(b"\r\n") {
            if line.len() >= MAX_LINE {
                return proto("authentication line too long");
            }
            let mut b = [0u8];
            self.read_exact(&mut b, deadline)?;
            line.push(b[0]);
        }
        line.truncate(line.len() - 2);
        String::from_utf8(line).or_else(|_| proto("authentication line is not UTF-8"))
    }

    fn send(&mut self, data: &[u8]) -> Result<(), BusError> {
        self.sock
            .set_write_timeout(Some(self.timeout))
            .and_then(|()| self.sock.write_all(data))
            .map_err(|source| match source.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => BusError::Timeout,
                _ => BusError::Io {
                    what: "cannot write to the service manager",
                    source,
                },
            })
    }

    fn read_exact(&mut self, buf: &mut [u8], deadline: Instant) -> Result<(), BusError> {
        let mut done = 0;
        while done < buf.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(BusError::Timeout);
            }
            let io = |source| BusError::Io {
                what: "cannot read from the service manager",
                source,
            };
            self.sock.set_read_timeout(Some(left)).map_err(io)?;
            match self.sock.read(&mut buf[done..]) {
                Ok(0) => return Err(BusError::Closed),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(BusError::Timeout)
                }
                Err(e) => return Err(io(e)),
            }
        }
        Ok(())
    }

    /// Reads one whole message.
    fn read_message(&mut self, deadline: Instant) -> Result<Message, BusError> {
        let mut fixed = [0u8; 16];
        self.read_exact(&mut fixed, deadline)?;
        let le = match fixed[0] {
            b'l' => true,
            b'B' => false,
            _ => return proto("bad endianness mark"),
        };
        if fixed[3] != 1 {
            return proto("unsupported protocol version");
        }
        let u32_at = |i: usize| {
            let b = [fixed[i], fixed[i + 1], fixed[i + 2], fixed[i + 3]];
            (if le {
                u32::from_le_bytes(b)
            } else {
                u32::from_be_bytes(b)
            }) as usize
        };
        let (body_len, fields_len) = (u32_at(4), u32_at(12));
        let total = 16usize
            .checked_add(fields_len)
            .map(|n| n.next_multiple_of(8))
            .and_then(|n| n.checked_add(body_len))
            .filter(|&n| n <= MAX_MESSAGE);
        let Some(total) = total else {
            return proto("message too large");
        };
        let mut data = vec![0u8; total];
        data[..16].copy_from_slice(&fixed);
        self.read_exact(&mut data[16..], deadline)?;
        Message::parse(&data, le)
    }

    /// Calls `member` with string arguments (`signature` says which: `s`, `o`…) and
    /// returns the reply; `JobRemoved` signals seen meanwhile are kept for
    /// [`Manager::wait_job`], anything else is skipped.
    fn call(
        &mut self,
        member: &str,
        signature: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<Message, BusError> {
        self.serial += 1;
        let serial = self.serial;
        let msg = method_call(serial, member, signature, args);
        self.send(&msg)?;
        let started = Instant::now();
        let deadline = started + timeout;
        let mut skipped = 0usize;
        loop {
            let m = match self.read_message(deadline) {
                Ok(m) => m,
                Err(e) => {
                    crate::log::debug(&format!(
                        "{member}(): {e} after {} ms, {skipped} other messages read",
                        started.elapsed().as_millis()
                    ));
                    return Err(e);
                }
            };
            if m.reply_serial == Some(serial) {
                crate::log::debug(&format!(
                    "{member}(): reply after {} ms, {skipped} other messages read",
                    started.elapsed().as_millis()
                ));
            }
            skipped += 1;
            match m.kind {
                METHOD_RETURN | ERROR if m.reply_serial == Some(serial) => {
                    if m.kind == ERROR {
                        let message = m.first_string().unwrap_or_default();
                        return Err(BusError::Remote {
                            name: m.error_name.unwrap_or_default(),
                            message,
                        });
                    }
                    return Ok(m);
                }
                SIGNAL => self.note_signal(&m),
                _ => {}
            }
        }
    }

    fn note_signal(&mut self, m: &Message) {
        if m.member.as_deref() == Some("JobRemoved")
            && m.interface.as_deref() == Some(MANAGER_IFACE)
        {
            if let Ok((job, result)) = m.job_removed() {
                self.removed.push((job, result));
            }
        }
    }

    /// `Reload()`: the manager's daemon-reload. Unlike `SIGHUP` (which only queues
    /// the reload), the reply comes once the unit files have been loaded again, so the
    /// unit actions that follow see the extension's units.
    pub fn reload(&mut self) -> Result<(), BusError> {
        self.call("Reload", "", &[], self.reload_timeout).map(drop)
    }

    /// A unit job method taking `(unit, mode)`, e.g. `RestartUnit`,
    /// `ReloadOrRestartUnit` or `StopUnit`, in mode `replace` as systemd-sysext uses;
    /// returns the job's object path.
    pub fn unit_job(&mut self, method: &str, unit: &str) -> Result<String, BusError> {
        let m = self.call(method, "ss", &[unit, "replace"], self.timeout)?;
        if m.signature != "o" {
            return proto(format!(
                "{method} returned \"{}\"",
                m.signature.escape_debug()
            ));
        }
        m.first_string()
            .map_or_else(|| proto(format!("{method} returned no job")), Ok)
    }

    /// Waits for the job `job` to finish (its `JobRemoved` signal, which the manager
    /// sends to every private connection) and returns its result (`done`, `failed`…).
    pub fn wait_job(&mut self, job: &str, deadline: Instant) -> Result<String, BusError> {
        loop {
            if let Some(i) = self.removed.iter().position(|(j, _)| j == job) {
                return Ok(self.removed.swap_remove(i).1);
            }
            let m = self.read_message(deadline)?;
            if m.kind == SIGNAL {
                self.note_signal(&m);
            }
        }
    }
}

/// Appends D-Bus marshalled data (little-endian) with the right alignment.
struct Writer(Vec<u8>);

impl Writer {
    fn pad(&mut self, align: usize) {
        self.0.resize(self.0.len().next_multiple_of(align), 0);
    }
    fn u32(&mut self, v: u32) {
        self.pad(4);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    /// A string or object path: length, bytes, NUL.
    fn string(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
    }
    /// A signature: one-byte length, bytes, NUL.
    fn signature(&mut self, s: &str) {
        self.0.push(s.len() as u8);
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
    }
    /// A header field: a `(yv)` struct.
    fn field(&mut self, code: u8, sig: &str, value: &str) {
        self.pad(8);
        self.0.push(code);
        self.signature(sig);
        if sig == "g" {
            self.signature(value);
        } else {
            self.string(value);
        }
    }
}

/// A METHOD_CALL to the manager with string-like arguments.
fn method_call(serial: u32, member: &str, signature: &str, args: &[&str]) -> Vec<u8> {
    let mut body = Writer(Vec::new());
    for a in args {
        body.string(a);
    }
    let mut w = Writer(vec![b'l', METHOD_CALL, 0, 1]);
    w.u32(body.0.len() as u32);
    w.u32(serial);
    w.u32(0); // header fields array length, set below
    let start = w.0.len(); // 16: already 8-aligned, the first struct needs no padding
    w.field(1, "o", MANAGER_PATH);
    w.field(2, "s", MANAGER_IFACE);
    w.field(3, "s", member);
    w.field(6, "s", MANAGER_DEST);
    if !signature.is_empty() {
        w.field(8, "g", signature);
    }
    let len = (w.0.len() - start) as u32;
    w.0[12..16].copy_from_slice(&len.to_le_bytes());
    w.pad(8);
    w.0.extend_from_slice(&body.0);
    w.0
}

/// The parts of a received message this client looks at.
#[derive(Debug, Default)]
struct Message {
    kind: u8,
    reply_serial: Option<u32>,
    error_name: Option<String>,
    interface: Option<String>,
    member: Option<String>,
    signature: String,
    /// The body, with its offset in the message (alignment is relative to the start).
    body: Vec<u8>,
    body_at: usize,
    le: bool,
}

/// Reads marshalled data at an offset, checking bounds and alignment.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    /// Offset of `data[0]` in the message, for alignment.
    base: usize,
    le: bool,
}

impl Reader<'_> {
    fn align(&mut self, n: usize) -> Result<(), BusError> {
        let to = (self.base + self.pos).next_multiple_of(n) - self.base;
        if to > self.data.len() {
            return proto("truncated");
        }
        if self.data[self.pos..to].iter().any(|&b| b != 0) {
            return proto("non-zero padding");
        }
        self.pos = to;
        Ok(())
    }
    fn take(&mut self, n: usize) -> Result<&[u8], BusError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            return proto("truncated");
        };
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, BusError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, BusError> {
        self.align(4)?;
        let b: [u8; 4] = self.take(4)?.try_into().unwrap_or([0; 4]);
        Ok(if self.le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }
    fn text(&mut self, len: usize) -> Result<String, BusError> {
        let s = self.take(len)?.to_vec();
        if self.u8()? != 0 || s.contains(&0) {
            return proto("string not NUL-terminated");
        }
        String::from_utf8(s).or_else(|_| proto("string is not UTF-8"))
    }
    /// `s` or `o`.
    fn string(&mut self) -> Result<String, BusError> {
        let n = self.u32()? as usize;
        self.text(n)
    }
    fn signature(&mut self) -> Result<String, BusError> {
        let n = self.u8()? as usize;
        self.text(n)
    }
    /// Skips one value of a basic type `t` (all header fields are basic).
    fn skip(&mut self, t: u8) -> Result<(), BusError> {
        match t {
            b'y' => self.take(1).map(drop),
            b'n' | b'q' => self.align(2).and_then(|()| self.take(2).map(drop)),
            b'b' | b'i' | b'u' | b'h' => self.u32().map(drop),
            b'x' | b't' | b'd' => self.align(8).and_then(|()| self.take(8).map(drop)),
            b's' | b'o' => self.string().map(drop),
            b'g' => self.signature().map(drop),
            _ => proto(format!("unexpected type '{}'", t.escape_ascii())),
        }
    }
}

impl Message {
    fn parse(data: &[u8], le: bool) -> Result<Message, BusError> {
        if data.len() < 16 {
            return proto("truncated");
        }
        let mut m = Message {
            kind: data[1],
            le,
            ..Message::default()
        };
        let mut r = Reader {
            data,
            pos: 8,
            base: 0,
            le,
        };
        let serial = r.u32()?;
        if serial == 0 {
            return proto("zero serial");
        }
        let fields_end = 16 + r.u32()? as usize;
        if fields_end.next_multiple_of(8) > data.len() {
            return proto("truncated");
        }
        let mut r = Reader {
            data: &data[..fields_end],
            pos: 16,
            base: 0,
            le,
        };
        while r.pos < fields_end {
            r.align(8)?;
            let code = r.u8()?;
            let sig = r.signature()?;
            let want = match code {
                1 => "o",
                2..=4 | 6 | 7 => "s",
                5 | 9 => "u",
                8 => "g",
                _ => "",
            };
            if !want.is_empty() && sig != want {
                return proto(format!(
                    "header field {code} has type \"{}\"",
                    sig.escape_debug()
                ));
            }
            match code {
                2 => m.interface = Some(r.string()?),
                3 => m.member = Some(r.string()?),
                4 => m.error_name = Some(r.string()?),
                5 => m.reply_serial = Some(r.u32()?),
                8 => m.signature = r.signature()?,
                _ if sig.len() == 1 => r.skip(sig.as_bytes()[0])?,
                _ => return proto("header field of a container type"),
            }
        }
        m.body_at = fields_end.next_multiple_of(8);
        m.body = data[m.body_at..].to_vec();
        match m.kind {
            METHOD_CALL | METHOD_RETURN | SIGNAL => {}
            ERROR if m.error_name.is_some() => {}
            ERROR => return proto("error without a name"),
            _ => return proto("unknown message type"),
        }
        if matches!(m.kind, METHOD_RETURN | ERROR) && m.reply_serial.is_none() {
            return proto("reply without a serial");
        }
        Ok(m)
    }

    fn body(&self) -> Reader<'_> {
        Reader {
            data: &self.body,
            pos: 0,
            base: self.body_at,
            le: self.le,
        }
    }

    /// The first argument when it is a string or object path.
    fn first_string(&self) -> Option<String> {
        match self.signature.as_bytes().first() {
            Some(b's' | b'o') => self.body().string().ok(),
            _ => None,
        }
    }

    /// `JobRemoved(u id, o job, s unit, s result)`: the job and its result.
    fn job_removed(&self) -> Result<(String, String), BusError> {
        if self.signature != "uoss" {
            return proto("JobRemoved with an unexpected signature");
        }
        let mut r = self.body();
        r.u32()?;
        let job = r.string()?;
        r.string()?;
        Ok((job, r.string()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::thread;

    /// A message as the manager sends it (little-endian), with any header fields.
    fn reply(
        kind: u8,
        fields: &[(u8, &str, &str)],
        reply_to: u32,
        sig: &str,
        body: &[u8],
    ) -> Vec<u8> {
        let mut w = Writer(vec![b'l', kind, 1, 1]);
        w.u32(body.len() as u32);
        w.u32(7);
        w.u32(0);
        for &(c, s, v) in fields {
            w.field(c, s, v);
        }
        w.pad(8);
        w.0.push(5);
        w.signature("u");
        w.u32(reply_to);
        if !sig.is_empty() {
            w.field(8, "g", sig);
        }
        let len = (w.0.len() - 16) as u32;
        w.0[12..16].copy_from_slice(&len.to_le_bytes());
        w.pad(8);
        w.0.extend_from_slice(body);
        w.0
    }

    fn strings(args: &[&str]) -> Vec<u8> {
        let mut w = Writer(Vec::new());
        for a in args {
            w.string(a);
        }
        w.0
    }

    /// What the fake manager received: the member and string arguments of a call.
    fn read_call(s: &mut UnixStream) -> (u32, String, Vec<String>) {
        let mut fixed = [0u8; 16];
        s.read_exact(&mut fixed).unwrap();
        let body = u32::from_le_bytes(fixed[4..8].try_into().unwrap()) as usize;
        let fields = u32::from_le_bytes(fixed[12..16].try_into().unwrap()) as usize;
        let mut rest = vec![0u8; (16 + fields).next_multiple_of(8) + body - 16];
        s.read_exact(&mut rest).unwrap();
        let data = [&fixed[..], &rest].concat();
        assert_eq!(data[1], METHOD_CALL);
        let m = Message::parse(&data, true).unwrap();
        assert_eq!(m.interface.as_deref(), Some(MANAGER_IFACE));
        let mut args = Vec::new();
        let mut r = m.body();
        for _ in m.signature.chars() {
            args.push(r.string().unwrap());
        }
        let serial = u32::from_le_bytes(data[8..12].try_into().unwrap());
        (serial, m.member.unwrap(), args)
    }

    /// Runs `server` as the manager on a socket in a temporary directory, after the
    /// authentication exchange, and connects a client to it.
    fn fake(
        timeout: Duration,
        server: impl FnOnce(UnixStream) + Send + 'static,
    ) -> (
        Result<Manager, BusError>,
        thread::JoinHandle<()>,
        tempfile::TempDir,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("private");
        let l = UnixListener::bind(&path).unwrap();
        let t = thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut line = Vec::new();
            let mut b = [0u8];
            while !line.ends_with(b"\r\n") {
                s.read_exact(&mut b).unwrap();
                line.push(b[0]);
            }
            let uid = rustix::process::getuid().as_raw().to_string();
            let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
            assert_eq!(line, format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes());
            s.write_all(b"OK 0123456789abcdef0123456789abcdef\r\n")
                .unwrap();
            let mut begin = [0u8; 7];
            s.read_exact(&mut begin).unwrap();
            assert_eq!(&begin, b"BEGIN\r\n");
            server(s);
        });
        (Manager::connect_at(&path, timeout), t, dir)
    }

    const SECOND: Duration = Duration::from_secs(5);

    #[test]
    fn reload_then_restart_and_wait() {
        let (m, t, _d) = fake(SECOND, |mut s| {
            let (serial, member, args) = read_call(&mut s);
            assert_eq!((member.as_str(), args.len()), ("Reload", 0));
            s.write_all(&reply(METHOD_RETURN, &[], serial, "", &[]))
                .unwrap();
            let (serial, member, args) = read_call(&mut s);
            assert_eq!(member, "RestartUnit");
            assert_eq!(args, ["foo.service", "replace"]);
            let job = "/org/freedesktop/systemd1/job/42";
            // A signal before the reply, then the reply, then the job's end.
            let sigf = [(2, "s", MANAGER_IFACE), (3, "s", "JobNew")];
            s.write_all(&reply(SIGNAL, &sigf, 0, "", &[])).unwrap();
            s.write_all(&reply(METHOD_RETURN, &[], serial, "o", &strings(&[job])))
                .unwrap();
            let mut body = Writer(Vec::new());
            body.u32(42);
            body.string(job);
            body.string("foo.service");
            body.string("done");
            let f = [(2, "s", MANAGER_IFACE), (3, "s", "JobRemoved")];
            s.write_all(&reply(SIGNAL, &f, 0, "uoss", &body.0)).unwrap();
        });
        let mut m = m.unwrap();
        m.reload().unwrap();
        let job = m.unit_job("RestartUnit", "foo.service").unwrap();
        assert_eq!(job, "/org/freedesktop/systemd1/job/42");
        let r = m.wait_job(&job, Instant::now() + SECOND).unwrap();
        assert_eq!(r, "done");
        t.join().unwrap();
    }

    #[test]
    fn error_reply_names_the_error() {
        let (m, t, _d) = fake(SECOND, |mut s| {
            let (serial, member, _) = read_call(&mut s);
            assert_eq!(member, "ReloadOrRestartUnit");
            let f = [(4, "s", "org.freedesktop.systemd1.NoSuchUnit")];
            let body = strings(&["Unit gone.service not found."]);
            s.write_all(&reply(ERROR, &f, serial, "s", &body)).unwrap();
        });
        let e = m
            .unwrap()
            .unit_job("ReloadOrRestartUnit", "gone.service")
            .unwrap_err();
        assert!(e.is_remote("org.freedesktop.systemd1.NoSuchUnit"), "{e:?}");
        assert_eq!(
            e.to_string(),
            "org.freedesktop.systemd1.NoSuchUnit: Unit gone.service not found."
        );
        t.join().unwrap();
    }

    #[test]
    fn early_close_is_an_error() {
        let (m, t, _d) = fake(SECOND, |mut s| {
            read_call(&mut s);
        });
        assert!(matches!(m.unwrap().reload(), Err(BusError::Closed)));
        t.join().unwrap();
    }

    #[test]
    fn refused_authentication() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("private");
        let l = UnixListener::bind(&path).unwrap();
        let t = thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(b"REJECTED EXTERNAL\r\n").unwrap();
        });
        let e = Manager::connect_at(&path, SECOND).err().unwrap();
        assert!(matches!(e, BusError::Auth(_)), "{e:?}");
        t.join().unwrap();
    }

    #[test]
    fn garbage_replies_are_errors() {
        let bad: Vec<Vec<u8>> = vec![
            b"XXXXXXXXXXXXXXXXXXXXXXXX".to_vec(),
            // A member string longer than the header fields.
            {
                let mut r = vec![
                    b'l',
                    METHOD_RETURN,
                    0,
                    1,
                    0,
                    0,
                    0,
                    0,
                    1,
                    0,
                    0,
                    0,
                    16,
                    0,
                    0,
                    0,
                ];
                r.extend_from_slice(&[3, 1, b's', 0, 0xe8, 3, 0, 0]);
                r.extend_from_slice(&[0u8; 8]);
                r
            },
            // An error reply without a name.
            reply(ERROR, &[], 1, "", &[]),
            // A method return with a wrongly typed reply serial.
            reply(METHOD_RETURN, &[(5, "s", "1")], 1, "", &[]),
        ];
        for (i, msg) in bad.into_iter().enumerate() {
            let (m, t, _d) = fake(SECOND, move |mut s| {
                read_call(&mut s);
                s.write_all(&msg).unwrap();
            });
            let e = m.unwrap().reload().unwrap_err();
            assert!(matches!(e, BusError::Protocol(_)), "case {i}: {e:?}");
            t.join().unwrap();
        }
    }

    #[test]
    fn a_wrong_reply_type_is_an_error() {
        let (m, t, _d) = fake(SECOND, |mut s| {
            let (serial, _, _) = read_call(&mut s);
            s.write_all(&reply(METHOD_RETURN, &[], serial, "s", &strings(&["x"])))
                .unwrap();
        });
        let e = m.unwrap().unit_job("RestartUnit", "a.service").unwrap_err();
        assert!(matches!(e, BusError::Protocol(_)), "{e:?}");
        t.join().unwrap();
    }

    #[test]
    fn too_large_reply_is_refused() {
        let (m, t, _d) = fake(SECOND, |mut s| {
            let (serial, _, _) = read_call(&mut s);
            let mut r = reply(METHOD_RETURN, &[], serial, "", &[]);
            r[4..8].copy_from_slice(&(64u32 << 20).to_le_bytes());
            s.write_all(&r).unwrap();
        });
        let e = m.unwrap().reload().unwrap_err();
        assert!(matches!(e, BusError::Protocol(_)), "{e:?}");
        t.join().unwrap();
    }

    #[test]
    fn silent_manager_times_out() {
        let (m, t, _d) = fake(Duration::from_millis(200), |mut s| {
            read_call(&mut s);
            // Half a message, then nothing; hold the socket open until the client gives up.
            s.write_all(b"l\x02\x01\x01").unwrap();
            let mut b = [0u8];
            let _ = s.read(&mut b);
        });
        let started = Instant::now();
        let e = m.unwrap().reload().unwrap_err();
        assert!(matches!(e, BusError::Timeout), "{e:?}");
        assert!(started.elapsed() < SECOND);
        drop(e);
        t.join().unwrap();
    }

    #[test]
    fn no_socket_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = Manager::connect_at(&dir.path().join("none"), SECOND)
            .err()
            .unwrap();
        assert!(matches!(e, BusError::Io { .. }), "{e:?}");
    }

    /// The call we send parses as what the specification asks.
    #[test]
    fn method_call_layout() {
        let m = method_call(3, "RestartUnit", "ss", &["a.service", "replace"]);
        assert_eq!(&m[..4], &[b'l', 1, 0, 1]);
        let fields = u32::from_le_bytes(m[12..16].try_into().unwrap()) as usize;
        let body_at = (16 + fields).next_multiple_of(8);
        assert_eq!(
            m.len() - body_at,
            u32::from_le_bytes(m[4..8].try_into().unwrap()) as usize
        );
        let p = Message::parse(&m, true).unwrap();
        assert_eq!(p.member.as_deref(), Some("RestartUnit"));
        assert_eq!(p.signature, "ss");
        assert_eq!(p.first_string().as_deref(), Some("a.service"));
    }
}
