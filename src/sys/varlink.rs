//! The Varlink socket: socket activation as systemd-sysext takes it, and the
//! connections, read and written with limits so that no peer can crash or stall the
//! service (what each call does is [`crate::varlink`]).
//!
//! systemd's `systemd-sysext.socket` (`Accept=yes`, `FileDescriptorName=varlink`)
//! starts one service per connection with the accepted socket as fd 3. A listening
//! socket (`Accept=no`) is served too: each connection on a thread of its own, so a
//! slow or silent peer does not hold up the others.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::net::{RecvFlags, SendFlags};

use crate::format::varlink::{parse_call, Framer};
use crate::varlink::{Peer, Service};

/// The first socket-activated fd (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

/// How long a connection may keep the service waiting for its next bytes, or for
/// room to write a reply: sd-varlink's default method timeout, 45 s. After it the
/// connection is closed. (Tests shorten it: [`crate::fault::VARLINK_TIMEOUT_ENV`].)
pub const IO_TIMEOUT: Duration = Duration::from_secs(45);

/// Connections served at once on a listening socket (systemd's default
/// `MaxConnections=` of a socket unit is 64); more are closed at once.
pub const MAX_CONNECTIONS: usize = 64;

/// The bytes read at a time (sd-varlink's `VARLINK_READ_SIZE`).
const READ_SIZE: usize = 64 * 1024;

/// The socket this process was activated with to serve Varlink, as systemd 262's
/// `sd_varlink_invocation()` finds it: `$LISTEN_PID` is this process, `$LISTEN_FDS`
/// is 1 and `$LISTEN_FDNAMES` is `varlink` (without that name systemd-sysext runs as
/// a command, and so does extmerge). `None`: not a Varlink invocation.
#[allow(unsafe_code)]
pub fn invocation() -> Option<OwnedFd> {
    let var = |k| std::env::var(k).ok();
    let pid = var("LISTEN_PID")?.parse::<i32>().ok()?;
    if pid != rustix::process::getpid().as_raw_nonzero().get()
        || var("LISTEN_FDS")?.as_str() != "1"
        || var("LISTEN_FDNAMES")?.as_str() != "varlink"
    {
        return None;
    }
    // The fd must be a socket of ours (not a stray fd 3 of an unrelated environment).
    let st = rustix::fs::fstat(
        // SAFETY: fd 3 is only borrowed for this fstat; whether it is open is what
        // fstat tells (EBADF otherwise).
        unsafe { BorrowedFd::borrow_raw(LISTEN_FDS_START) },
    )
    .ok()?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Socket {
        return None;
    }
    // SAFETY: the service manager handed fd 3 to this process for it to own
    // ($LISTEN_PID is us); nothing else in this program uses fd 3.
    Some(unsafe { OwnedFd::from_raw_fd(LISTEN_FDS_START) })
}

/// Serves `fd`: an accepted connection until the peer closes it, or a listening
/// socket until accepting fails.
pub fn serve(fd: OwnedFd, service: &Service) -> io::Result<()> {
    let _ = rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC);
    if !rustix::net::sockopt::socket_acceptconn(&fd)? {
        connection(fd, service);
        return Ok(());
    }
    let active = AtomicUsize::new(0);
    std::thread::scope(|s| loop {
        let conn = match rustix::net::accept_with(&fd, rustix::net::SocketFlags::CLOEXEC) {
            Ok(c) => c,
            Err(rustix::io::Errno::INTR | rustix::io::Errno::CONNABORTED) => continue,
            // Out of fds or memory for a moment: the next peer may fare better.
            Err(
                rustix::io::Errno::MFILE
                | rustix::io::Errno::NFILE
                | rustix::io::Errno::NOBUFS
                | rustix::io::Errno::NOMEM,
            ) => {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        let active = &active;
        let spawned = std::thread::Builder::new()
            .name("varlink".into())
            .spawn_scoped(s, move || {
                connection(conn, service);
                active.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::SeqCst);
        }
    })
}

/// One connection: calls read and answered in turn until the peer closes it, sends a
/// malformed or over-size message, or stays silent for [`IO_TIMEOUT`].
fn connection(fd: OwnedFd, service: &Service) {
    let timeout = service
        .base
        .options
        .env
        .faults
        .varlink_timeout_ms
        .map_or(IO_TIMEOUT, Duration::from_millis);
    let peer = Peer {
        privileged: rustix::net::sockopt::socket_peercred(&fd).is_ok_and(|c| c.uid.is_root()),
    };
    if rustix::io::ioctl_fionbio(&fd, true).is_err() {
        return;
    }
    let mut framer = Framer::default();
    let mut buf = vec![0u8; READ_SIZE];
    loop {
        match framer.next_message() {
            Ok(Some(msg)) => {
                let Ok(call) = parse_call(&msg) else {
                    crate::log::debug("Varlink: malformed message, closing the connection.");
                    return;
                };
                let mut alive = true;
                service.call(&call, peer, &mut |reply| {
                    alive = alive && write_all(fd.as_fd(), &reply, timeout);
                    alive
                });
                if !alive {
                    return;
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                crate::log::debug(&format!("Varlink: {e}, closing the connection."));
                return;
            }
        }
        if !wait(fd.as_fd(), PollFlags::IN, timeout) {
            return;
        }
        match rustix::net::recv(&fd, &mut buf[..], RecvFlags::empty()) {
            Ok((0, _)) => return,
            Ok((n, _)) => framer.push(&buf[..n.min(READ_SIZE)]),
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
            Err(_) => return,
        }
    }
}

/// Waits until `fd` is ready for `what` (or the peer hung up); false after `timeout`.
fn wait(fd: BorrowedFd<'_>, what: PollFlags, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let left = Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [PollFd::new(&fd, what)];
        match poll(&mut fds, Some(&left)) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
}

/// Writes all of `bytes`; false if the peer is gone or does not read for `timeout`.
fn write_all(fd: BorrowedFd<'_>, mut bytes: &[u8], timeout: Duration) -> bool {
    while !bytes.is_empty() {
        match rustix::net::send(fd, bytes, SendFlags::NOSIGNAL) {
            Ok(n) => bytes = &bytes[n.min(bytes.len())..],
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => {
                if !wait(fd, PollFlags::OUT, timeout) {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    true
}
