//! Loop devices, set up with the kernel's ioctls directly (no losetup, no libmount).
//!
//! A disk-image extension (`foo.raw`) becomes a block device in three steps:
//! `LOOP_CTL_GET_FREE` on `/dev/loop-control` names a free device, `/dev/loopN` is
//! opened, and `LOOP_CONFIGURE` binds the backing file with offset, size limit, block
//! size and flags in one call (Linux 5.8+), so nobody (udev's blkid, a racing mount)
//! ever sees the device half-configured. [`LoopDevice::attach`] adds the retries
//! util-linux has learnt (`lib/loopdev.c`, `libmount/src/hook_loopdev.c`): `EBUSY`
//! means another process took the device between the two calls, so we ask for another;
//! `EAGAIN` means the kernel wants the call repeated.
//!
//! # Lifetime of a loop device
//!
//! A bound loop device stays bound until `LOOP_CLR_FD`, or, with
//! [`LO_FLAGS_AUTOCLEAR`](LoFlags::AUTOCLEAR), until its *last opener* closes it. Every
//! open of `/dev/loopN` counts as an opener: our own fd, a mounted file system, a
//! device-mapper table on top of it. `LOOP_CLR_FD` itself never waits: when someone
//! else still has the device open it only sets the autoclear flag (Linux has done this
//! since 2.6.x, to survive udev's blkid), so "detach" and "autoclear" end the same way.
//!
//! For a merge this is what we want: attach with `autoclear`, mount the file system
//! (the mount now holds the device), then [`LoopDevice::keep`] and close our fd. The
//! device lives exactly as long as the mount, and unmounting frees it; an error before
//! the mount drops the [`LoopDevice`], which detaches it at once.

#![allow(unsafe_code)]

use crate::log::os_text;
use std::io;
use std::mem::{align_of, size_of};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::{Dev, FileType, Mode, OFlags, CWD};
use rustix::io::{retry_on_intr, Errno};
use rustix::ioctl::{ioctl, Getter, IntegerSetter, Ioctl, IoctlOutput, NoArg, Opcode, Setter};

/// `LO_NAME_SIZE`: length of `lo_file_name` and `lo_crypt_name`.
const LO_NAME_SIZE: usize = 64;
/// `LO_KEY_SIZE`: length of `lo_encrypt_key` (unused since Linux 4.x dropped cryptoloop).
const LO_KEY_SIZE: usize = 32;
/// `LOOP_MAJOR` (<linux/major.h>): block major of every loop device.
pub const LOOP_MAJOR: u32 = 7;

// Opcodes, as <linux/loop.h> defines them: bare numbers in the 'L' (0x4C) group, not
// `_IOW` encodings, so they carry no size and must not be computed with `opcode::write`.
/// `LOOP_SET_FD` (argument: the backing fd as an integer).
pub const LOOP_SET_FD: Opcode = 0x4C00;
/// `LOOP_CLR_FD` (no argument).
pub const LOOP_CLR_FD: Opcode = 0x4C01;
/// `LOOP_SET_STATUS64` (argument: `struct loop_info64 *`, read by the kernel).
pub const LOOP_SET_STATUS64: Opcode = 0x4C04;
/// `LOOP_GET_STATUS64` (argument: `struct loop_info64 *`, written by the kernel).
pub const LOOP_GET_STATUS64: Opcode = 0x4C05;
/// `LOOP_SET_DIRECT_IO` (argument: 0 or 1 as an integer; Linux 4.4+).
pub const LOOP_SET_DIRECT_IO: Opcode = 0x4C08;
/// `LOOP_SET_BLOCK_SIZE` (argument: the logical block size as an integer; Linux 4.14+).
pub const LOOP_SET_BLOCK_SIZE: Opcode = 0x4C09;
/// `LOOP_CONFIGURE` (argument: `struct loop_config *`; Linux 5.8+).
pub const LOOP_CONFIGURE: Opcode = 0x4C0A;
/// `LOOP_CTL_GET_FREE` on `/dev/loop-control` (no argument; answers in the return value).
pub const LOOP_CTL_GET_FREE: Opcode = 0x4C82;

bitflags::bitflags! {
    /// `lo_flags` of `struct loop_info64` (`LO_FLAGS_*` in <linux/loop.h>).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct LoFlags: u32 {
        /// `LO_FLAGS_READ_ONLY`: settable only by `LOOP_CONFIGURE`; `LOOP_SET_FD` derives
        /// it from the open modes of the backing file and of the loop device.
        const READ_ONLY = 1;
        /// `LO_FLAGS_AUTOCLEAR`: unbind on the last close.
        const AUTOCLEAR = 4;
        /// `LO_FLAGS_PARTSCAN`: scan for a partition table (`/dev/loopNpM`).
        const PARTSCAN = 8;
        /// `LO_FLAGS_DIRECT_IO`: read the backing file with `O_DIRECT` (no double caching).
        const DIRECT_IO = 16;
        // The kernel may report bits we do not know; keep them.
        const _ = !0;
    }
}

/// `struct loop_info64` (<linux/loop.h>): status of a bound loop device.
#[doc(alias = "loop_info64")]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopInfo64 {
    /// `lo_device`: `st_dev` of the backing file (read-only).
    pub lo_device: u64,
    /// `lo_inode`: inode of the backing file (read-only).
    pub lo_inode: u64,
    /// `lo_rdevice`: `st_rdev` of the backing file (read-only).
    pub lo_rdevice: u64,
    /// `lo_offset`: where in the backing file the device starts, in bytes.
    pub lo_offset: u64,
    /// `lo_sizelimit`: device size in bytes; 0 = up to the end of the file.
    pub lo_sizelimit: u64,
    /// `lo_number`: N of `/dev/loopN` (read-only).
    pub lo_number: u32,
    /// `lo_encrypt_type`: obsolete, ignored.
    pub lo_encrypt_type: u32,
    /// `lo_encrypt_key_size`: obsolete.
    pub lo_encrypt_key_size: u32,
    /// `lo_flags`: `LO_FLAGS_*`.
    pub lo_flags: u32,
    /// `lo_file_name`: a name for the backing file, NUL-terminated; informational only
    /// (sysfs `backing_file` shows the real path).
    pub lo_file_name: [u8; LO_NAME_SIZE],
    /// `lo_crypt_name`: obsolete.
    pub lo_crypt_name: [u8; LO_NAME_SIZE],
    /// `lo_encrypt_key`: obsolete.
    pub lo_encrypt_key: [u8; LO_KEY_SIZE],
    /// `lo_init`: obsolete.
    pub lo_init: [u64; 2],
}

/// `struct loop_config` (<linux/loop.h>): the whole configuration for `LOOP_CONFIGURE`.
#[doc(alias = "loop_config")]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopConfig {
    /// `fd`: the backing file.
    pub fd: u32,
    /// `block_size`: logical block size; 0 = the kernel's default (512, or the backing
    /// device's with direct I/O).
    pub block_size: u32,
    /// `info`: offset, size limit, flags, file name.
    pub info: LoopInfo64,
    /// `__reserved`: must be zero.
    pub reserved: [u64; 8],
}

// Layouts as in <linux/loop.h> (the sizes strace and util-linux check, too).
const _: () = assert!(size_of::<LoopInfo64>() == 232);
const _: () = assert!(size_of::<LoopConfig>() == 304);
// Alignment as the kernel's: both structs hold plain `__u64` fields (`lo_device`,
// `__reserved`), so they are aligned like `__u64` (8 on 64-bit ABIs, 4 on i386), which is
// what Rust's `u64` is aligned to on each target.
const _: () = assert!(align_of::<LoopInfo64>() == align_of::<u64>());
const _: () = assert!(align_of::<LoopConfig>() == align_of::<u64>());
#[cfg(target_pointer_width = "64")]
const _: () = assert!(align_of::<LoopInfo64>() == 8 && align_of::<LoopConfig>() == 8);
const _: () = assert!(std::mem::offset_of!(LoopInfo64, lo_number) == 40);
const _: () = assert!(std::mem::offset_of!(LoopInfo64, lo_file_name) == 56);
const _: () = assert!(std::mem::offset_of!(LoopConfig, info) == 8);

impl LoopInfo64 {
    /// All fields zero.
    pub const fn zeroed() -> Self {
        LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: 0,
            lo_sizelimit: 0,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: 0,
            lo_file_name: [0; LO_NAME_SIZE],
            lo_crypt_name: [0; LO_NAME_SIZE],
            lo_encrypt_key: [0; LO_KEY_SIZE],
            lo_init: [0; 2],
        }
    }

    /// `lo_file_name` up to its NUL.
    pub fn file_name(&self) -> String {
        let end = memchr::memchr(0, &self.lo_file_name).unwrap_or(LO_NAME_SIZE);
        String::from_utf8_lossy(&self.lo_file_name[..end]).into_owned()
    }

    /// Sets `lo_file_name`, cut to 63 bytes (the kernel keeps the last byte NUL).
    pub fn set_file_name(&mut self, name: &str) {
        self.lo_file_name = [0; LO_NAME_SIZE];
        let n = name.len().min(LO_NAME_SIZE - 1);
        self.lo_file_name[..n].copy_from_slice(&name.as_bytes()[..n]);
    }

    /// `lo_flags` as [`LoFlags`].
    pub fn flags(&self) -> LoFlags {
        LoFlags::from_bits_retain(self.lo_flags)
    }
}

/// A failed loop device step: which ioctl (or `open`), on which device, for which backing
/// file, and the errno:
/// `LOOP_CONFIGURE /dev/loop3 (backing /var/lib/extensions/foo.raw): Device or resource busy`.
#[derive(Debug, thiserror::Error)]
#[error(
    "{op} {} (backing {}): {}",
    crate::format::escape::esc(.device),
    crate::format::escape::esc(.backing),
    os_text(.source)
)]
pub struct LoopError {
    /// The ioctl (`LOOP_CONFIGURE`, …) or `open`/`mknod`.
    pub op: &'static str,
    /// The device node (`/dev/loop3`), or `/dev/loop-control`.
    pub device: String,
    /// The backing file, as `/proc/self/fd` names it.
    pub backing: String,
    /// The errno.
    #[source]
    pub source: io::Error,
}

impl LoopError {
    fn new(op: &'static str, device: impl Into<String>, backing: &str, e: Errno) -> Self {
        LoopError {
            op,
            device: device.into(),
            backing: backing.to_string(),
            source: e.into(),
        }
    }

    /// errno for the C ABI.
    pub fn errno(&self) -> i32 {
        self.source.raw_os_error().unwrap_or(libc::EIO)
    }
}

// --- the ioctls ------------------------------------------------------------------------

/// `LOOP_CTL_GET_FREE` answers in the ioctl's return value, which none of rustix's
/// patterns (`Getter`, `Setter`, …) return, so it gets its own `Ioctl`.
struct LoopCtlGetFree;

// SAFETY: LOOP_CTL_GET_FREE takes no argument (the pointer is null and never read or
// written) and returns the device number or a negative errno; the opcode is the one in
// <linux/loop.h>. It changes no user memory, hence IS_MUTATING = false.
unsafe impl Ioctl for LoopCtlGetFree {
    type Output = u32;
    const IS_MUTATING: bool = false;

    fn opcode(&self) -> Opcode {
        LOOP_CTL_GET_FREE
    }

    fn as_ptr(&mut self) -> *mut std::ffi::c_void {
        std::ptr::null_mut()
    }

    unsafe fn output_from_ptr(
        out: IoctlOutput,
        _: *mut std::ffi::c_void,
    ) -> rustix::io::Result<u32> {
        // A successful ioctl returns >= 0; anything else would be a kernel bug.
        u32::try_from(out).map_err(|_| Errno::INVAL)
    }
}

/// `ioctl(ctl, LOOP_CTL_GET_FREE)`: the number N of an unbound loop device, adding a
/// new one if none is free (so `max_loop` does not limit it).
///
/// Nothing is reserved: another process may bind loopN before we do (then
/// `LOOP_CONFIGURE` answers `EBUSY`). Linux 3.1+.
///
/// # References
/// - loop(4), <linux/loop.h>
#[doc(alias = "LOOP_CTL_GET_FREE")]
pub fn loop_ctl_get_free(ctl: BorrowedFd<'_>) -> rustix::io::Result<u32> {
    // SAFETY: `LoopCtlGetFree` describes LOOP_CTL_GET_FREE exactly (see its impl); the fd
    // is a borrowed, open fd (if it is not /dev/loop-control the kernel answers ENOTTY).
    retry_on_intr(|| unsafe { ioctl(ctl, LoopCtlGetFree) })
}

/// `ioctl(dev, LOOP_CONFIGURE, &config)`: binds `config.fd` to the loop device and sets
/// offset, size limit, flags and block size, atomically. Linux 5.8+ (commit 3448914e8cc5).
///
/// # Errors
/// `EBUSY`: the device is bound already; `EINVAL`: bad flags, block size or backing
/// file (not a regular file or block device), or (before 5.8) an unknown ioctl;
/// `EBADF`: `config.fd` is not open (or is an `O_PATH` fd); `EAGAIN`: repeat.
///
/// # References
/// - loop(4), <linux/loop.h>
#[doc(alias = "LOOP_CONFIGURE")]
pub fn loop_configure(dev: BorrowedFd<'_>, config: &LoopConfig) -> rustix::io::Result<()> {
    // SAFETY: LOOP_CONFIGURE reads one `struct loop_config` (which `LoopConfig` mirrors,
    // size checked above) from the pointer `Setter` passes, and writes nothing back.
    retry_on_intr(|| unsafe { ioctl(dev, Setter::<LOOP_CONFIGURE, LoopConfig>::new(*config)) })
}

/// `ioctl(dev, LOOP_SET_FD, fd)`: binds `file` with everything else at defaults. The
/// pre-5.8 first half of [`loop_configure`]; read-only follows the open modes.
///
/// # References
/// - loop(4)
#[doc(alias = "LOOP_SET_FD")]
pub fn loop_set_fd(dev: BorrowedFd<'_>, file: BorrowedFd<'_>) -> rustix::io::Result<()> {
    let raw = file.as_raw_fd() as usize;
    // SAFETY: LOOP_SET_FD takes the fd number as the integer argument, not a pointer;
    // the kernel does not dereference it.
    retry_on_intr(|| unsafe { ioctl(dev, IntegerSetter::<LOOP_SET_FD>::new_usize(raw)) })
}

/// `ioctl(dev, LOOP_CLR_FD)`: unbinds the device, or, if someone else still has it open,
/// marks it autoclear so it unbinds at their last close.
///
/// # Errors
/// `ENXIO`: not bound.
///
/// # References
/// - loop(4)
#[doc(alias = "LOOP_CLR_FD")]
pub fn loop_clr_fd(dev: BorrowedFd<'_>) -> rustix::io::Result<()> {
    // SAFETY: LOOP_CLR_FD takes no argument; `NoArg` passes a null pointer.
    retry_on_intr(|| unsafe { ioctl(dev, NoArg::<LOOP_CLR_FD>::new()) })
}

/// `ioctl(dev, LOOP_GET_STATUS64, &info)`: offset, size limit, flags, name of a bound device.
///
/// # Errors
/// `ENXIO`: not bound.
///
/// # References
/// - loop(4)
#[doc(alias = "LOOP_GET_STATUS64")]
pub fn loop_get_status64(dev: BorrowedFd<'_>) -> rustix::io::Result<LoopInfo64> {
    // SAFETY: LOOP_GET_STATUS64 writes exactly one `struct loop_info64` (mirrored by
    // `LoopInfo64`, all of whose bit patterns are valid) to the pointer `Getter` passes.
    retry_on_intr(|| unsafe { ioctl(dev, Getter::<LOOP_GET_STATUS64, LoopInfo64>::new()) })
}

/// `ioctl(dev, LOOP_SET_STATUS64, &info)`: sets offset, size limit, name and the flags
/// `LOOP_SET_STATUS_SETTABLE_FLAGS` (autoclear, partscan) of a bound device; only
/// autoclear can be cleared again.
///
/// # Errors
/// `ENXIO`: not bound; `EAGAIN`: the page cache could not be dropped, repeat.
///
/// # References
/// - loop(4)
#[doc(alias = "LOOP_SET_STATUS64")]
pub fn loop_set_status64(dev: BorrowedFd<'_>, info: &LoopInfo64) -> rustix::io::Result<()> {
    // SAFETY: LOOP_SET_STATUS64 reads one `struct loop_info64` from the pointer.
    retry_on_intr(|| unsafe { ioctl(dev, Setter::<LOOP_SET_STATUS64, LoopInfo64>::new(*info)) })
}

/// `ioctl(dev, LOOP_SET_BLOCK_SIZE, size)`: the device's logical block size (512–4096,
/// a power of two). Linux 4.14+.
///
/// # References
/// - loop(4)
#[doc(alias = "LOOP_SET_BLOCK_SIZE")]
pub fn loop_set_block_size(dev: BorrowedFd<'_>, size: u32) -> rustix::io::Result<()> {
    // SAFETY: the argument is an integer, not a pointer.
    retry_on_intr(|| unsafe {
        ioctl(
            dev,
            IntegerSetter::<LOOP_SET_BLOCK_SIZE>::new_usize(size as usize),
        )
    })
}

/// `ioctl(dev, LOOP_SET_DIRECT_IO, on)`: switches `O_DIRECT` reads of the backing file.
/// Linux 4.4+.
///
/// # Errors
/// `EINVAL`: the backing file system or the offset/block size do not allow direct I/O.
///
/// # References
/// - loop(4)
#[doc(alias = "LOOP_SET_DIRECT_IO")]
pub fn loop_set_direct_io(dev: BorrowedFd<'_>, on: bool) -> rustix::io::Result<()> {
    // SAFETY: the argument is an integer, not a pointer.
    retry_on_intr(|| unsafe {
        ioctl(
            dev,
            IntegerSetter::<LOOP_SET_DIRECT_IO>::new_usize(on as usize),
        )
    })
}

// --- attaching ---------------------------------------------------------------------------

/// How [`LoopDevice::attach`] sets up the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoopOptions {
    /// `LO_FLAGS_READ_ONLY`; also opens `/dev/loopN` read-only, so that our fd is no
    /// writer that would keep a kernel without `CONFIG_BLK_DEV_WRITE_MOUNTED` (6.8+)
    /// from mounting the device.
    pub read_only: bool,
    /// `LO_FLAGS_DIRECT_IO`; silently dropped when the backing file system refuses it.
    pub direct_io: bool,
    /// `LO_FLAGS_AUTOCLEAR`: unbind at the last close (see the module docs).
    pub autoclear: bool,
    /// `LO_FLAGS_PARTSCAN`: create `/dev/loopNpM` for a partition table.
    pub partscan: bool,
    /// Logical block size (512, 1024, 2048, 4096); 0 = the kernel's default.
    pub block_size: u32,
}

/// Which ioctls bind the device (for tests; [`LoopDevice::attach`] picks by itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachStrategy {
    /// One `LOOP_CONFIGURE` (Linux 5.8+).
    Configure,
    /// `LOOP_SET_FD`, `LOOP_SET_BLOCK_SIZE`, `LOOP_SET_STATUS64`, `LOOP_SET_DIRECT_IO`:
    /// what kernels before 5.8 offer.
    SetFd,
}

/// How often we ask for another free device when ours was taken (`EBUSY`) or vanished.
const MAX_DEVICE_TRIES: usize = 64;
/// How often `EAGAIN` is repeated, and the pause between tries.
const MAX_AGAIN: usize = 40;
const AGAIN_PAUSE: Duration = Duration::from_millis(25);

/// A bound loop device, owned: dropping it detaches the device (`LOOP_CLR_FD`) unless
/// it was handed off with [`keep`](Self::keep).
#[derive(Debug)]
pub struct LoopDevice {
    fd: Option<OwnedFd>,
    number: u32,
    dev: Dev,
    path: PathBuf,
    backing: String,
}

/// One device's attempt: bound, or taken by someone else (ask for another).
enum Attempt {
    Bound,
    Taken(Errno),
}

/// `/dev/loop-control`, open: one for any number of [`attach`](Self::attach)es (a merge
/// of many images opens it once, not once per image).
#[derive(Debug)]
pub struct LoopControl {
    fd: OwnedFd,
}

impl LoopControl {
    /// Opens `/dev/loop-control` (read-write, close-on-exec).
    pub fn open() -> rustix::io::Result<LoopControl> {
        let fd = retry_on_intr(|| {
            rustix::fs::open(
                "/dev/loop-control",
                OFlags::RDWR | OFlags::CLOEXEC,
                Mode::empty(),
            )
        })?;
        Ok(LoopControl { fd })
    }

    /// [`LoopDevice::attach`] through this control device; `backing` names the backing
    /// file (in `lo_file_name` and in errors) where [`LoopDevice::attach`] asks
    /// `/proc/self/fd` for its path.
    pub fn attach(
        &self,
        file: BorrowedFd<'_>,
        offset: u64,
        size_limit: u64,
        opts: LoopOptions,
        backing: &str,
    ) -> Result<LoopDevice, LoopError> {
        self.attach_inner(file, offset, size_limit, opts, None, backing.to_string())
    }

    fn attach_inner(
        &self,
        file: BorrowedFd<'_>,
        offset: u64,
        size_limit: u64,
        opts: LoopOptions,
        force: Option<AttachStrategy>,
        backing: String,
    ) -> Result<LoopDevice, LoopError> {
        let ctl = &self.fd;
        let mut strategy = force.unwrap_or(AttachStrategy::Configure);
        let mut direct_io = opts.direct_io;
        let mut last = None;
        for _ in 0..MAX_DEVICE_TRIES {
            let nr = loop_ctl_get_free(ctl.as_fd()).map_err(|e| {
                LoopError::new("LOOP_CTL_GET_FREE", "/dev/loop-control", &backing, e)
            })?;
            let path = format!("/dev/loop{nr}");
            let (fd, rdev) = match open_loop_node(nr, opts.read_only) {
                Ok(r) => r,
                // Removed (LOOP_CTL_REMOVE) or being torn down between the two calls.
                Err((_, e @ (Errno::NOENT | Errno::NXIO | Errno::NODEV))) => {
                    last = Some(("open", path, e));
                    continue;
                }
                Err((op, e)) => return Err(LoopError::new(op, path, &backing, e)),
            };
            let attempt = loop {
                let r = match strategy {
                    AttachStrategy::Configure => configure(
                        fd.as_fd(),
                        file,
                        offset,
                        size_limit,
                        &opts,
                        direct_io,
                        &backing,
                    ),
                    AttachStrategy::SetFd => {
                        set_fd_and_status(fd.as_fd(), file, offset, size_limit, &opts, &backing)
                    }
                };
                match r {
                    Ok(a) => break a,
                    Err((op, Errno::INVAL)) if op == "LOOP_CONFIGURE" && direct_io => {
                        // The backing file system refuses O_DIRECT: buffered I/O it is.
                        direct_io = false;
                    }
                    Err((op, Errno::INVAL | Errno::NOTTY | Errno::NOSYS))
                        if op == "LOOP_CONFIGURE" && force.is_none() && !has_loop_configure() =>
                    {
                        strategy = AttachStrategy::SetFd;
                    }
                    Err((op, e)) => return Err(LoopError::new(op, path, &backing, e)),
                }
            };
            match attempt {
                // The device number is the node's, checked when it was opened (the
                // binding does not change it).
                Attempt::Bound => {
                    return Ok(LoopDevice {
                        fd: Some(fd),
                        number: nr,
                        dev: rdev,
                        path: PathBuf::from(path),
                        backing,
                    })
                }
                Attempt::Taken(e) => {
                    #[cfg(test)]
                    tests::TAKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let op = match strategy {
                        AttachStrategy::Configure => "LOOP_CONFIGURE",
                        AttachStrategy::SetFd => "LOOP_SET_FD",
                    };
                    last = Some((op, path, e));
                }
            }
        }
        let (op, path, e) =
            last.unwrap_or(("LOOP_CTL_GET_FREE", "/dev/loop-control".into(), Errno::BUSY));
        Err(LoopError::new(op, path, &backing, e))
    }
}

impl AsFd for LoopControl {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl LoopDevice {
    /// Binds `file` (from `offset`, at most `size_limit` bytes; 0 = to its end) to a free
    /// loop device: `LOOP_CTL_GET_FREE`, open `/dev/loopN`, `LOOP_CONFIGURE`.
    ///
    /// - `EBUSY` from `LOOP_CONFIGURE` (the device was taken between the two calls) and
    ///   a device node that vanished are retried with another free device, up to 64 times.
    /// - `EAGAIN` is repeated (up to 1 s).
    /// - `EINVAL` with `direct_io` set is retried without it: for a backing file system
    ///   without `O_DIRECT` (ramfs; tmpfs before 6.6) Linux 6.18 refuses the flag, where
    ///   6.1 quietly stayed buffered.
    /// - On kernels before 5.8, which answer `EINVAL` (or `ENOTTY` through compat
    ///   ioctls) to `LOOP_CONFIGURE`, the device is bound with `LOOP_SET_FD` and
    ///   configured with `LOOP_SET_STATUS64` afterwards. The kernel release decides,
    ///   not the errno alone, so a real `EINVAL` on a new kernel is reported as is.
    ///
    /// If `/dev/loopN` does not exist yet (no devtmpfs, or it has not caught up), the
    /// node is created with the numbers from `/sys/block/loopN/dev`. Needs
    /// `CAP_SYS_ADMIN` (the status ioctls on a read-only device fd ask for it).
    ///
    /// After a direct-I/O fallback [`status`](Self::status) shows no
    /// [`LoFlags::DIRECT_IO`].
    ///
    /// # Errors
    /// [`LoopError`] naming the failed step, the device and the backing file.
    pub fn attach(
        file: BorrowedFd<'_>,
        offset: u64,
        size_limit: u64,
        opts: LoopOptions,
    ) -> Result<LoopDevice, LoopError> {
        Self::attach_with(file, offset, size_limit, opts, None)
    }

    /// [`attach`](Self::attach), with the binding ioctls pinned by `force` (tests use it
    /// to cover the pre-5.8 path on a new kernel).
    pub fn attach_with(
        file: BorrowedFd<'_>,
        offset: u64,
        size_limit: u64,
        opts: LoopOptions,
        force: Option<AttachStrategy>,
    ) -> Result<LoopDevice, LoopError> {
        let backing = fd_name(file);
        let ctl = LoopControl::open()
            .map_err(|e| LoopError::new("open", "/dev/loop-control", &backing, e))?;
        ctl.attach_inner(file, offset, size_limit, opts, force, backing)
    }

    /// N of `/dev/loopN`.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// The device number (`st_rdev` of our fd: major 7, minor N unless `max_part` is set).
    pub fn dev(&self) -> Dev {
        self.dev
    }

    /// `/dev/loopN`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The backing file, as `/proc/self/fd` named it when attaching.
    pub fn backing(&self) -> &str {
        &self.backing
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.fd
            .as_ref()
            .expect("LoopDevice fd is taken only by keep/detach, which consume self")
            .as_fd()
    }

    fn err(&self, op: &'static str, e: Errno) -> LoopError {
        LoopError::new(op, self.path.display().to_string(), &self.backing, e)
    }

    /// `LOOP_GET_STATUS64`: the device's current offset, size limit, flags and name.
    pub fn status(&self) -> Result<LoopInfo64, LoopError> {
        loop_get_status64(self.fd()).map_err(|e| self.err("LOOP_GET_STATUS64", e))
    }

    /// Sets or clears `LO_FLAGS_AUTOCLEAR` (`LOOP_GET_STATUS64`, then
    /// `LOOP_SET_STATUS64` with everything else unchanged).
    pub fn set_autoclear(&mut self, on: bool) -> Result<(), LoopError> {
        let mut info = self.status()?;
        let mut flags = info.flags();
        flags.set(LoFlags::AUTOCLEAR, on);
        info.lo_flags = flags.bits();
        repeat_on_again(|| loop_set_status64(self.fd(), &info))
            .map_err(|e| self.err("LOOP_SET_STATUS64", e))
    }

    /// `LOOP_CLR_FD`, then closes our fd. With no other opener the device is free when
    /// this returns; while something (a mount) still has it open, the kernel only sets
    /// autoclear and frees it at that opener's last close.
    ///
    /// # Errors
    /// `ENXIO` if the device was no longer bound. The fd is closed in any case.
    pub fn detach(mut self) -> Result<(), LoopError> {
        let fd = self.fd.take().expect("fd present until consumed");
        loop_clr_fd(fd.as_fd()).map_err(|e| self.err("LOOP_CLR_FD", e))
    }

    /// Hands the device over without detaching it, and returns our fd. Closing that fd
    /// is then an ordinary close: with autoclear, the device is freed when its last
    /// opener (typically the mount made from it) goes away; without, it stays bound
    /// until someone detaches it.
    pub fn keep(mut self) -> OwnedFd {
        self.fd.take().expect("fd present until consumed")
    }
}

impl AsFd for LoopDevice {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd()
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        if let Some(fd) = self.fd.take() {
            // As detach(): best effort, nothing to report to from here.
            let _ = loop_clr_fd(fd.as_fd());
        }
    }
}

/// `LOOP_CONFIGURE` with our options; `Err` carries the failing op for the caller's
/// fallback decisions.
fn configure(
    dev: BorrowedFd<'_>,
    file: BorrowedFd<'_>,
    offset: u64,
    size_limit: u64,
    opts: &LoopOptions,
    direct_io: bool,
    backing: &str,
) -> Result<Attempt, (&'static str, Errno)> {
    let mut info = LoopInfo64::zeroed();
    info.lo_offset = offset;
    info.lo_sizelimit = size_limit;
    let mut flags = LoFlags::empty();
    flags.set(LoFlags::READ_ONLY, opts.read_only);
    flags.set(LoFlags::AUTOCLEAR, opts.autoclear);
    flags.set(LoFlags::PARTSCAN, opts.partscan);
    flags.set(LoFlags::DIRECT_IO, direct_io);
    info.lo_flags = flags.bits();
    info.set_file_name(backing);
    let config = LoopConfig {
        fd: file.as_raw_fd() as u32,
        block_size: opts.block_size,
        info,
        reserved: [0; 8],
    };
    match repeat_on_again(|| loop_configure(dev, &config)) {
        Ok(()) => Ok(Attempt::Bound),
        Err(Errno::BUSY) => Ok(Attempt::Taken(Errno::BUSY)),
        Err(e) => Err(("LOOP_CONFIGURE", e)),
    }
}

/// The pre-5.8 way: bind first, configure second. Between the two the device is visible
/// with offset 0 and no size limit (udev may probe it then), which is why
/// `LOOP_CONFIGURE` exists; kernels we target (Debian 12's 6.1 and newer) never get here.
fn set_fd_and_status(
    dev: BorrowedFd<'_>,
    file: BorrowedFd<'_>,
    offset: u64,
    size_limit: u64,
    opts: &LoopOptions,
    backing: &str,
) -> Result<Attempt, (&'static str, Errno)> {
    // LOOP_SET_FD cannot set LO_FLAGS_READ_ONLY; it takes read-only from the open modes.
    // Our device fd is read-only already for `read_only`; a read-only backing fd makes
    // sure of it even where the device fd had to be opened read-write.
    let reopened;
    let file = if opts.read_only && !is_read_only_fd(file) {
        reopened = rustix::fs::open(
            format!("/proc/self/fd/{}", file.as_raw_fd()).as_str(),
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ("open read-only", e))?;
        reopened.as_fd()
    } else {
        file
    };
    match loop_set_fd(dev, file) {
        Ok(()) => {}
        Err(Errno::BUSY) => return Ok(Attempt::Taken(Errno::BUSY)),
        Err(e) => return Err(("LOOP_SET_FD", e)),
    }
    let undo = |op, e| {
        let _ = loop_clr_fd(dev);
        Err((op, e))
    };
    if opts.block_size != 0 {
        if let Err(e) = loop_set_block_size(dev, opts.block_size) {
            return undo("LOOP_SET_BLOCK_SIZE", e);
        }
    }
    let mut info = LoopInfo64::zeroed();
    info.lo_offset = offset;
    info.lo_sizelimit = size_limit;
    let mut flags = LoFlags::empty();
    flags.set(LoFlags::AUTOCLEAR, opts.autoclear);
    flags.set(LoFlags::PARTSCAN, opts.partscan);
    info.lo_flags = flags.bits();
    info.set_file_name(backing);
    if let Err(e) = repeat_on_again(|| loop_set_status64(dev, &info)) {
        return undo("LOOP_SET_STATUS64", e);
    }
    if opts.direct_io {
        match loop_set_direct_io(dev, true) {
            Ok(()) | Err(Errno::INVAL) => {} // no O_DIRECT here: stay buffered
            Err(e) => return undo("LOOP_SET_DIRECT_IO", e),
        }
    }
    Ok(Attempt::Bound)
}

/// Repeats `f` while it answers `EAGAIN` (bounded; util-linux waits the same way).
fn repeat_on_again(mut f: impl FnMut() -> rustix::io::Result<()>) -> rustix::io::Result<()> {
    let mut tries = 0;
    loop {
        match f() {
            Err(Errno::AGAIN) if tries < MAX_AGAIN => {
                tries += 1;
                std::thread::sleep(AGAIN_PAUSE);
            }
            r => return r,
        }
    }
}

/// Opens `/dev/loopN` (read-only or read-write, close-on-exec), creating the node from
/// `/sys/block/loopN/dev` if devtmpfs has not, and returns it with its device number
/// (checked to be a loop device's). `Err` names the failed step.
fn open_loop_node(nr: u32, read_only: bool) -> Result<(OwnedFd, Dev), (&'static str, Errno)> {
    let path = format!("/dev/loop{nr}");
    let flags = if read_only {
        OFlags::RDONLY
    } else {
        OFlags::RDWR
    } | OFlags::CLOEXEC;
    let open = || retry_on_intr(|| rustix::fs::open(path.as_str(), flags, Mode::empty()));
    let fd = match open() {
        Err(Errno::NOENT) => {
            // The minor is N << part_shift when the module has max_part set, so take
            // the numbers from sysfs rather than assuming 7:N.
            let dev = read_devnum(&format!("/sys/block/loop{nr}/dev"))
                .unwrap_or_else(|| rustix::fs::makedev(LOOP_MAJOR, nr));
            match rustix::fs::mknodat(
                CWD,
                path.as_str(),
                FileType::BlockDevice,
                Mode::from_raw_mode(0o660),
                dev,
            ) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(("mknod", e)),
            }
            open().map_err(|e| ("open", e))?
        }
        r => r.map_err(|e| ("open", e))?,
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| ("fstat", e))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::BlockDevice
        || rustix::fs::major(st.st_rdev) != LOOP_MAJOR
    {
        return Err(("open", Errno::NOTBLK));
    }
    Ok((fd, st.st_rdev))
}

/// Parses a sysfs `dev` file ("7:3\n").
pub(crate) fn read_devnum(path: &str) -> Option<Dev> {
    let s = std::fs::read_to_string(path).ok()?;
    let (maj, min) = s.trim().split_once(':')?;
    Some(rustix::fs::makedev(maj.parse().ok()?, min.parse().ok()?))
}

/// What `/proc/self/fd/N` names `fd` (the path the user knows), or `fd N`.
pub(crate) fn fd_name(fd: BorrowedFd<'_>) -> String {
    match rustix::fs::readlink(
        format!("/proc/self/fd/{}", fd.as_raw_fd()).as_str(),
        Vec::new(),
    ) {
        Ok(p) => String::from_utf8_lossy(p.as_bytes()).into_owned(),
        Err(_) => format!("fd {}", fd.as_raw_fd()),
    }
}

fn is_read_only_fd(fd: BorrowedFd<'_>) -> bool {
    rustix::fs::fcntl_getfl(fd)
        .map(|f| (f & OFlags::RWMODE) == OFlags::RDONLY)
        .unwrap_or(false)
}

/// Does the running kernel have `LOOP_CONFIGURE` (5.8+)? Unparsable releases count as
/// old, so the fallback stays reachable there.
fn has_loop_configure() -> bool {
    let uname = rustix::system::uname();
    parse_kernel_version(&uname.release().to_string_lossy()).is_some_and(|v| v >= (5, 8))
}

/// `"6.1.0-13-cloud-amd64"` → `(6, 1)`.
pub(crate) fn parse_kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::sync::{Arc, Barrier};

    /// How often attach found its device taken (`EBUSY`) and asked for another.
    pub(super) static TAKEN: std::sync::atomic::AtomicUsize =
        std::sync::atomic::AtomicUsize::new(0);

    #[test]
    fn opcodes_match_linux_loop_h() {
        // <linux/loop.h> defines them as bare numbers in the 'L' group, i.e. _IO('L', nr).
        use rustix::ioctl::opcode::none;
        assert_eq!(LOOP_CONFIGURE, none(b'L', 0x0A));
        assert_eq!(LOOP_CTL_GET_FREE, 0x4C82);
        assert_eq!(LOOP_CLR_FD, none(b'L', 0x01));
        assert_eq!(LOOP_GET_STATUS64, 0x4C05);
        assert_eq!(LOOP_SET_STATUS64, 0x4C04);
        assert_eq!(LOOP_SET_BLOCK_SIZE, 0x4C09);
        assert_eq!(LOOP_SET_DIRECT_IO, 0x4C08);
        assert_eq!(LoFlags::all().bits(), !0);
    }

    #[test]
    fn file_name_is_cut_and_terminated() {
        let mut info = LoopInfo64::zeroed();
        info.set_file_name(&"x".repeat(100));
        assert_eq!(info.lo_file_name[62], b'x');
        assert_eq!(info.lo_file_name[63], 0);
        assert_eq!(info.file_name().len(), 63);
        info.set_file_name("/a.raw");
        assert_eq!(info.file_name(), "/a.raw");
    }

    #[test]
    fn kernel_version_parsing() {
        assert_eq!(parse_kernel_version("6.1.0-13-cloud-amd64"), Some((6, 1)));
        assert_eq!(parse_kernel_version("6.18.44-fc-v782"), Some((6, 18)));
        assert_eq!(parse_kernel_version("5.8"), Some((5, 8)));
        assert_eq!(parse_kernel_version("weird"), None);
    }

    #[test]
    fn error_names_op_device_and_backing() {
        let e = LoopError::new(
            "LOOP_CONFIGURE",
            "/dev/loop3",
            "/var/lib/extensions/foo.raw",
            Errno::BUSY,
        );
        // The errno text comes from strerror, whose shim under miri words it differently.
        let busy = os_text(&io::Error::from(Errno::BUSY));
        assert!(busy.starts_with("Device or resource busy"), "{busy}");
        assert_eq!(
            e.to_string(),
            format!("LOOP_CONFIGURE /dev/loop3 (backing /var/lib/extensions/foo.raw): {busy}")
        );
        assert_eq!(e.errno(), libc::EBUSY);
    }

    // --- root tests on real loop devices ---

    /// Loop devices usable? Prints SKIP otherwise.
    fn loop_ready(test: &str) -> bool {
        if !rustix::process::getuid().is_root() {
            eprintln!("SKIP {test}: not root");
            return false;
        }
        if !Path::new("/dev/loop-control").exists() {
            eprintln!("SKIP {test}: no /dev/loop-control");
            return false;
        }
        true
    }

    /// A temp dir and a 1 MiB file in it whose byte i is (i * 7 + i / 4096) % 251.
    fn pattern_file() -> (tempfile::TempDir, PathBuf, Vec<u8>) {
        let dir = tempfile::Builder::new()
            .prefix("extmerge-loop")
            .tempdir()
            .unwrap();
        let path = dir.path().join("image.raw");
        let data: Vec<u8> = (0..1usize << 20)
            .map(|i| ((i * 7 + i / 4096) % 251) as u8)
            .collect();
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&data)
            .unwrap();
        (dir, path, data)
    }

    fn sys(nr: u32, attr: &str) -> Option<String> {
        std::fs::read_to_string(format!("/sys/block/loop{nr}/{attr}"))
            .ok()
            .map(|s| s.trim_end().to_string())
    }

    /// Loop devices whose backing file lies under `dir` (the leftover check).
    fn attached_under(dir: &Path) -> Vec<String> {
        let mut v = Vec::new();
        for e in std::fs::read_dir("/sys/block").unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) {
                if b.trim_end().starts_with(dir.to_str().unwrap()) {
                    v.push(name);
                }
            }
        }
        v
    }

    /// Waits (up to 5 s) until loopN has no backing file; true if it got there.
    fn released(nr: u32) -> bool {
        for _ in 0..500 {
            if sys(nr, "loop/backing_file").is_none() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    fn check_ro_offset_limit(strategy: Option<AttachStrategy>) {
        let (dir, path, data) = pattern_file();
        let file = std::fs::File::open(&path).unwrap();
        let (offset, limit) = (3 * 4096u64, 256 * 1024u64);
        let opts = LoopOptions {
            read_only: true,
            ..Default::default()
        };
        let dev = LoopDevice::attach_with(file.as_fd(), offset, limit, opts, strategy).unwrap();
        drop(file); // the loop device keeps its own reference to the backing file
        let nr = dev.number();
        assert_eq!(dev.path(), Path::new(&format!("/dev/loop{nr}")));
        assert_eq!(rustix::fs::major(dev.dev()), LOOP_MAJOR);
        assert_eq!(
            sys(nr, "dev").unwrap(),
            format!("7:{}", rustix::fs::minor(dev.dev()))
        );
        assert_eq!(sys(nr, "loop/offset").unwrap(), offset.to_string());
        assert_eq!(sys(nr, "loop/sizelimit").unwrap(), limit.to_string());
        assert_eq!(sys(nr, "ro").unwrap(), "1");
        assert_eq!(sys(nr, "loop/autoclear").unwrap(), "0");
        assert_eq!(
            sys(nr, "loop/backing_file").unwrap(),
            path.to_str().unwrap()
        );
        assert_eq!(sys(nr, "size").unwrap(), (limit / 512).to_string());
        let st = dev.status().unwrap();
        assert_eq!(
            (st.lo_offset, st.lo_sizelimit, st.lo_number),
            (offset, limit, nr)
        );
        assert!(st.flags().contains(LoFlags::READ_ONLY));
        assert_eq!(st.file_name(), path.to_str().unwrap());

        // Read back through the block device.
        let mut blk = std::fs::File::open(dev.path()).unwrap();
        let mut got = Vec::new();
        blk.read_to_end(&mut got).unwrap();
        assert_eq!(got.len() as u64, limit);
        assert!(
            got == data[offset as usize..(offset + limit) as usize],
            "content differs"
        );
        blk.seek(SeekFrom::Start(4096)).unwrap();
        let mut b = [0u8; 16];
        blk.read_exact(&mut b).unwrap();
        assert_eq!(&b[..], &data[offset as usize + 4096..][..16]);
        // read-only: writing must fail
        let w = std::fs::OpenOptions::new().write(true).open(dev.path());
        assert!(w.is_err() || w.unwrap().write_all(&[0; 512]).is_err());
        drop(blk);

        dev.detach().unwrap();
        assert!(released(nr), "loop{nr} still bound after detach");
        assert_eq!(attached_under(dir.path()), Vec::<String>::new());
    }

    #[test]
    #[cfg_attr(miri, ignore = "needs the kernel (miri models no ioctl or keyctl)")]
    fn attach_read_only_with_offset_and_limit() {
        if loop_ready("attach_read_only_with_offset_and_limit") {
            check_ro_offset_limit(None);
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "needs the kernel (miri models no ioctl or keyctl)")]
    fn attach_with_set_fd_fallback() {
        // The pre-5.8 path, forced on this kernel.
        if loop_ready("attach_with_set_fd_fallback") {
            check_ro_offset_limit(Some(AttachStrategy::SetFd));
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "needs the kernel (miri models no ioctl or keyctl)")]
    fn autoclear_frees_on_last_close() {
        if !loop_ready("autoclear_frees_on_last_close") {
            return;
        }
        let (dir, path, _) = pattern_file();
        let file = std::fs::File::open(&path).unwrap();
        let opts = LoopOptions {
            read_only: true,
            autoclear: true,
            ..Default::default()
        };

        // 1. keep() + close our fd, nobody else holds it: freed.
        let dev = LoopDevice::attach(file.as_fd(), 0, 0, opts).unwrap();
        let nr = dev.number();
        assert_eq!(sys(nr, "loop/autoclear").unwrap(), "1");
        let fd = dev.keep();
        assert!(
            sys(nr, "loop/backing_file").is_some(),
            "bound while our fd is open"
        );
        drop(fd);
        assert!(
            released(nr),
            "autoclear: loop{nr} not freed after the last close"
        );

        // 2. Another opener (as a mount would be) keeps it alive after we hand off.
        let dev = LoopDevice::attach(file.as_fd(), 0, 0, opts).unwrap();
        let nr = dev.number();
        let other = std::fs::File::open(dev.path()).unwrap();
        drop(dev.keep());
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            sys(nr, "loop/backing_file").as_deref(),
            path.to_str(),
            "freed while still open elsewhere"
        );
        drop(other);
        assert!(
            released(nr),
            "loop{nr} not freed after the other opener closed"
        );

        // 3. No autoclear: detach() while someone has it open turns autoclear on.
        let opts = LoopOptions {
            autoclear: false,
            ..opts
        };
        let mut dev = LoopDevice::attach(file.as_fd(), 0, 0, opts).unwrap();
        let nr = dev.number();
        assert_eq!(sys(nr, "loop/autoclear").unwrap(), "0");
        dev.set_autoclear(true).unwrap();
        assert_eq!(sys(nr, "loop/autoclear").unwrap(), "1");
        dev.set_autoclear(false).unwrap();
        assert_eq!(sys(nr, "loop/autoclear").unwrap(), "0");
        assert_eq!(
            sys(nr, "loop/offset").unwrap(),
            "0",
            "status round trip kept offset"
        );
        let other = std::fs::File::open(dev.path()).unwrap();
        dev.detach().unwrap();
        assert_eq!(sys(nr, "loop/autoclear").as_deref(), Some("1"));
        drop(other);
        assert!(released(nr));

        // 4. Drop without keep() detaches.
        let dev = LoopDevice::attach(file.as_fd(), 0, 0, opts).unwrap();
        let nr = dev.number();
        drop(dev);
        assert!(released(nr), "drop did not detach loop{nr}");
        assert_eq!(attached_under(dir.path()), Vec::<String>::new());
    }

    #[test]
    #[cfg_attr(miri, ignore = "needs the kernel (miri models no ioctl or keyctl)")]
    fn concurrent_attach_gets_distinct_devices() {
        if !loop_ready("concurrent_attach_gets_distinct_devices") {
            return;
        }
        let (dir, path, _) = pattern_file();
        let n = 8;
        let barrier = Arc::new(Barrier::new(n));
        let threads: Vec<_> = (0..n)
            .map(|_| {
                let (barrier, path) = (barrier.clone(), path.clone());
                std::thread::spawn(move || {
                    let file = std::fs::File::open(&path).unwrap();
                    barrier.wait();
                    let opts = LoopOptions {
                        read_only: true,
                        ..Default::default()
                    };
                    LoopDevice::attach(file.as_fd(), 0, 0, opts)
                })
            })
            .collect();
        let devs: Vec<LoopDevice> = threads
            .into_iter()
            .map(|t| t.join().unwrap().expect("attach under contention"))
            .collect();
        eprintln!(
            "concurrent_attach: {} EBUSY retries so far in this process",
            TAKEN.load(std::sync::atomic::Ordering::Relaxed)
        );
        let mut nrs: Vec<u32> = devs.iter().map(|d| d.number()).collect();
        nrs.sort();
        nrs.dedup();
        assert_eq!(nrs.len(), n, "devices shared: {nrs:?}");
        for d in &devs {
            assert_eq!(
                sys(d.number(), "loop/backing_file").as_deref(),
                path.to_str()
            );
        }
        drop(devs);
        for nr in nrs {
            assert!(released(nr), "loop{nr} left bound");
        }
        assert_eq!(attached_under(dir.path()), Vec::<String>::new());
    }

    #[test]
    #[cfg_attr(miri, ignore = "needs the kernel (miri models no ioctl or keyctl)")]
    fn bad_backing_fds_are_reported() {
        if !loop_ready("bad_backing_fds_are_reported") {
            return;
        }
        let (dir, path, _) = pattern_file();
        // An O_PATH fd is open, but the kernel's fget() refuses it: EBADF.
        let opath = rustix::fs::open(&path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).unwrap();
        let e = LoopDevice::attach(opath.as_fd(), 0, 0, LoopOptions::default()).unwrap_err();
        assert_eq!(e.op, "LOOP_CONFIGURE");
        assert_eq!(e.errno(), libc::EBADF);
        assert!(e.device.starts_with("/dev/loop"));
        let msg = e.to_string();
        assert!(
            msg.starts_with("LOOP_CONFIGURE /dev/loop")
                && msg.ends_with(&format!(
                    "(backing {}): Bad file descriptor",
                    path.display()
                )),
            "{msg}"
        );
        // A directory is no backing file: EINVAL.
        let d = std::fs::File::open(dir.path()).unwrap();
        let e = LoopDevice::attach(d.as_fd(), 0, 0, LoopOptions::default()).unwrap_err();
        assert_eq!((e.op, e.errno()), ("LOOP_CONFIGURE", libc::EINVAL), "{e}");
        // Bad block size: EINVAL, also through the fallback path.
        let file = std::fs::File::open(&path).unwrap();
        let opts = LoopOptions {
            block_size: 1000,
            ..Default::default()
        };
        let e = LoopDevice::attach(file.as_fd(), 0, 0, opts).unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL, "{e}");
        let e = LoopDevice::attach_with(file.as_fd(), 0, 0, opts, Some(AttachStrategy::SetFd))
            .unwrap_err();
        assert_eq!(
            (e.op, e.errno()),
            ("LOOP_SET_BLOCK_SIZE", libc::EINVAL),
            "{e}"
        );
        assert_eq!(attached_under(dir.path()), Vec::<String>::new());
    }

    #[test]
    #[cfg_attr(miri, ignore = "needs the kernel (miri models no ioctl or keyctl)")]
    fn direct_io_and_block_size() {
        if !loop_ready("direct_io_and_block_size") {
            return;
        }
        let (dir, path, data) = pattern_file();
        let file = std::fs::File::open(&path).unwrap();
        let opts = LoopOptions {
            read_only: true,
            direct_io: true,
            block_size: 4096,
            ..Default::default()
        };
        let dev = LoopDevice::attach(file.as_fd(), 8192, 0, opts).unwrap();
        let nr = dev.number();
        assert_eq!(sys(nr, "queue/logical_block_size").unwrap(), "4096");
        let dio = sys(nr, "loop/dio").unwrap();
        // ext4 (the host's /tmp) supports O_DIRECT; tmpfs only since 6.6, and the
        // kernel (or we, on EINVAL) falls back to buffered I/O there.
        let fs = rustix::fs::fstatfs(&file).unwrap().f_type;
        if fs == 0xEF53 {
            assert_eq!(dio, "1");
        }
        eprintln!("direct_io_and_block_size: loop/dio={dio} (backing f_type {fs:#x})");
        let mut got = Vec::new();
        std::fs::File::open(dev.path())
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        assert!(got == data[8192..], "content differs");
        drop(dev);
        assert!(released(nr));
        assert_eq!(attached_under(dir.path()), Vec::<String>::new());
    }

    /// ramfs has no `O_DIRECT`: since Linux 6.x's loop rework `LOOP_CONFIGURE` with
    /// `LO_FLAGS_DIRECT_IO` answers `EINVAL` there (6.1 silently stays buffered), and
    /// attach must retry without it. The ramfs is mounted in a mount namespace of this
    /// test's own thread, so the host's mounts are untouched.
    #[test]
    #[cfg_attr(miri, ignore = "needs the kernel (miri models no ioctl or keyctl)")]
    fn direct_io_refused_falls_back_to_buffered() {
        use rustix::mount::{mount, mount_change, unmount, MountFlags, MountPropagationFlags};
        use rustix::thread::UnshareFlags;
        if !loop_ready("direct_io_refused_falls_back_to_buffered") {
            return;
        }
        let dir = tempfile::Builder::new()
            .prefix("extmerge-loop")
            .tempdir()
            .unwrap();
        let at = dir.path().to_path_buf();
        std::thread::spawn(move || {
            // SAFETY: only CLONE_NEWNS (with its implied CLONE_FS) is unshared: this
            // thread gets its own mount namespace and cwd; the fd table stays shared, so
            // no thread can observe an fd from a table it does not have.
            if let Err(e) = unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS) } {
                eprintln!("SKIP direct_io_refused_falls_back_to_buffered: unshare: {e}");
                return;
            }
            let private = MountPropagationFlags::REC | MountPropagationFlags::PRIVATE;
            mount_change("/", private).unwrap();
            mount("ramfs", &at, "ramfs", MountFlags::empty(), None).unwrap();
            let path = at.join("image.raw");
            let data: Vec<u8> = (0..256 * 1024usize).map(|i| (i % 253) as u8).collect();
            std::fs::write(&path, &data).unwrap();
            let file = std::fs::File::open(&path).unwrap();
            let opts = LoopOptions {
                read_only: true,
                direct_io: true,
                ..Default::default()
            };
            let dev = LoopDevice::attach(file.as_fd(), 0, 0, opts).unwrap();
            let nr = dev.number();
            assert_eq!(sys(nr, "loop/dio").unwrap(), "0");
            assert!(!dev.status().unwrap().flags().contains(LoFlags::DIRECT_IO));
            let mut got = Vec::new();
            std::fs::File::open(dev.path())
                .unwrap()
                .read_to_end(&mut got)
                .unwrap();
            assert!(got == data, "content differs");
            drop(dev);
            assert!(released(nr));
            drop(file);
            unmount(&at, rustix::mount::UnmountFlags::empty()).unwrap();
        })
        .join()
        .unwrap();
        assert_eq!(attached_under(dir.path()), Vec::<String>::new());
    }
}
