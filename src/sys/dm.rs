//! Device-mapper, spoken directly through `/dev/mapper/control` (no libdevmapper, no
//! veritysetup), enough to put a dm-verity device over a signed extension image.
//!
//! Every request is one buffer: a `struct dm_ioctl` header naming the device, followed
//! (for `DM_TABLE_LOAD`) by `struct dm_target_spec`s each trailed by its NUL-terminated
//! parameter string, padded to 8 bytes. Answers come back in the same buffer. A device
//! is made in three calls: `DM_DEV_CREATE` (an empty, suspended device), `DM_TABLE_LOAD`
//! (the table goes into the inactive slot) and `DM_DEV_SUSPEND` without
//! `DM_SUSPEND_FLAG`, which is "resume": the table becomes live. [`Dm::create`] removes
//! the device again if a later step fails, so an error leaves nothing behind.
//!
//! Without udev nobody makes `/dev/mapper/NAME`; [`Dm::create`] creates that node itself
//! (devtmpfs only provides `/dev/dm-N`), and [`Dm::remove`] deletes it again. When udev
//! runs, it replaces our node with its symlink, and we leave the symlink to udev.
//!
//! For a merge, [`Dm::remove`] with `deferred` is the way out: the kernel removes the
//! device when its last opener (the mounted file system) closes it, so unmounting the
//! extension also tears down its verity device, and with autoclear loop devices below,
//! those too.
//!
//! # References
//! - <linux/dm-ioctl.h> (the protocol), drivers/md/dm-ioctl.c (what the kernel checks)
//! - Documentation/admin-guide/device-mapper/verity.rst (the `verity` table line)

#![allow(unsafe_code)]

use std::io;
use std::mem::{align_of, offset_of, size_of};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use rustix::fs::{AtFlags, Dev, FileType, Mode, OFlags, CWD};
use rustix::io::{retry_on_intr, Errno};
use rustix::ioctl::{ioctl, opcode, Ioctl, IoctlOutput, Opcode};

use crate::format::bytes::{ne_u32, ne_u64};
use crate::log::os_text;
use crate::sys::loopdev::read_devnum;

/// `DM_NAME_LEN`: device names are at most 127 bytes plus NUL.
pub const DM_NAME_LEN: usize = 128;
/// `DM_UUID_LEN`: uuids are at most 128 bytes plus NUL.
pub const DM_UUID_LEN: usize = 129;
/// `DM_MAX_TYPE_NAME`: target type names are at most 15 bytes plus NUL.
pub const DM_MAX_TYPE_NAME: usize = 16;
/// `DM_DIR`, `DM_CONTROL_NODE`: where the control node lives.
pub const DM_CONTROL: &str = "/dev/mapper/control";
/// `MAPPER_CTRL_MINOR` (<linux/miscdevice.h>): the control node's fixed misc minor;
/// opening 10:236 makes the kernel load dm-mod (`devname:mapper/control` alias).
const MAPPER_CTRL_MINOR: u32 = 236;
/// `MISC_MAJOR`.
const MISC_MAJOR: u32 = 10;

/// The interface version we speak: 4.x. The kernel refuses a request whose major
/// differs or whose minor is newer than its own, so we ask for 4.0.0 and read the
/// kernel's version from the answer.
const DM_VERSION_MAJOR: u32 = 4;
/// `DM_DEFERRED_REMOVE` exists since interface 4.27 (Linux 3.13).
const DM_VERSION_MINOR_DEFERRED: u32 = 27;

/// `struct dm_ioctl` (<linux/dm-ioctl.h>): the header of every request and answer.
#[doc(alias = "dm_ioctl")]
#[repr(C)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmIoctl {
    /// `version`: interface version; in: what we speak, out: the kernel's.
    pub version: [u32; 3],
    /// `data_size`: size of the whole buffer, this header included.
    pub data_size: u32,
    /// `data_start`: offset of the payload from the start of the header.
    pub data_start: u32,
    /// `target_count`: in: targets in a `DM_TABLE_LOAD`; out: targets in the answer.
    pub target_count: u32,
    /// `open_count`: out: how many openers the device has.
    pub open_count: i32,
    /// `flags`: `DM_*_FLAG`, see [`DmFlags`].
    pub flags: u32,
    /// `event_nr`: event counter out; in: udev cookie (unused here).
    pub event_nr: u32,
    /// `padding`.
    pub padding: u32,
    /// `dev`: the device number, `huge_encode_dev()` form, which for 12-bit majors and
    /// 20-bit minors is glibc's `makedev()` form too.
    pub dev: u64,
    /// `name`: NUL-terminated device name.
    pub name: [u8; DM_NAME_LEN],
    /// `uuid`: NUL-terminated uuid (empty: look the device up by name).
    pub uuid: [u8; DM_UUID_LEN],
    /// `data`: padding to 312 bytes (the payload starts at `data_start`, not here).
    pub data: [u8; 7],
}

/// `struct dm_target_spec` (<linux/dm-ioctl.h>): one table line, followed by its
/// NUL-terminated parameter string.
#[doc(alias = "dm_target_spec")]
#[repr(C)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmTargetSpec {
    /// `sector_start`: first sector (512 bytes) the target covers.
    pub sector_start: u64,
    /// `length`: sectors covered.
    pub length: u64,
    /// `status`: out only.
    pub status: i32,
    /// `next`: in a `DM_TABLE_LOAD`: offset of the next spec from *this* spec; in a
    /// status answer: offset of the next spec from the start of the *data area*.
    pub next: u32,
    /// `target_type`: "verity", "linear", …, NUL-terminated.
    pub target_type: [u8; DM_MAX_TYPE_NAME],
}

const HDR: usize = size_of::<DmIoctl>();
const SPEC: usize = size_of::<DmTargetSpec>();
const _: () = assert!(HDR == 312);
const _: () = assert!(SPEC == 40);
// Alignment as the kernel's: both structs hold plain `__u64` fields (`dev`,
// `sector_start`), so they are aligned like `__u64` (8 on 64-bit ABIs, 4 on i386), which
// is what Rust's `u64` is aligned to on each target.
const _: () = assert!(align_of::<DmIoctl>() == align_of::<u64>());
const _: () = assert!(align_of::<DmTargetSpec>() == align_of::<u64>());
#[cfg(target_pointer_width = "64")]
const _: () = assert!(align_of::<DmIoctl>() == 8 && align_of::<DmTargetSpec>() == 8);
const _: () = assert!(offset_of!(DmIoctl, dev) == 40);
const _: () = assert!(offset_of!(DmIoctl, name) == 48);
const _: () = assert!(offset_of!(DmIoctl, uuid) == 176);
const _: () = assert!(offset_of!(DmIoctl, data) == 305);
const _: () = assert!(offset_of!(DmTargetSpec, target_type) == 24);

/// The `_IOWR(DM_IOCTL, nr, struct dm_ioctl)` opcode of a dm command.
const fn dm_op(nr: u8) -> Opcode {
    opcode::read_write::<DmIoctl>(DM_IOCTL, nr)
}
/// `DM_IOCTL`: the ioctl group.
pub const DM_IOCTL: u8 = 0xfd;
/// `DM_VERSION`: `_IOWR(0xfd, 0, struct dm_ioctl)`.
pub const DM_VERSION: Opcode = dm_op(0);
/// `DM_DEV_CREATE`: `_IOWR(0xfd, 3, struct dm_ioctl)`.
pub const DM_DEV_CREATE: Opcode = dm_op(3);
/// `DM_DEV_REMOVE`: `_IOWR(0xfd, 4, struct dm_ioctl)`.
pub const DM_DEV_REMOVE: Opcode = dm_op(4);
/// `DM_DEV_SUSPEND`: `_IOWR(0xfd, 6, struct dm_ioctl)`; without `DM_SUSPEND_FLAG`: resume.
pub const DM_DEV_SUSPEND: Opcode = dm_op(6);
/// `DM_DEV_STATUS`: `_IOWR(0xfd, 7, struct dm_ioctl)`.
pub const DM_DEV_STATUS: Opcode = dm_op(7);
/// `DM_TABLE_LOAD`: `_IOWR(0xfd, 9, struct dm_ioctl)`.
pub const DM_TABLE_LOAD: Opcode = dm_op(9);
/// `DM_TABLE_STATUS`: `_IOWR(0xfd, 12, struct dm_ioctl)`.
pub const DM_TABLE_STATUS: Opcode = dm_op(12);

bitflags::bitflags! {
    /// `flags` of `struct dm_ioctl` (`DM_*_FLAG` in <linux/dm-ioctl.h>).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct DmFlags: u32 {
        /// `DM_READONLY_FLAG`: in (table load): a read-only table; out: device is read-only.
        const READONLY = 1 << 0;
        /// `DM_SUSPEND_FLAG`: in (`DM_DEV_SUSPEND`): suspend, else resume; out: suspended.
        const SUSPEND = 1 << 1;
        /// `DM_PERSISTENT_DEV_FLAG`: in (create): use the minor in `dev`.
        const PERSISTENT_DEV = 1 << 3;
        /// `DM_STATUS_TABLE_FLAG`: in (`DM_TABLE_STATUS`): the table, not the status.
        const STATUS_TABLE = 1 << 4;
        /// `DM_ACTIVE_PRESENT_FLAG`: out: there is a live table.
        const ACTIVE_PRESENT = 1 << 5;
        /// `DM_INACTIVE_PRESENT_FLAG`: out: a loaded table waits for resume.
        const INACTIVE_PRESENT = 1 << 6;
        /// `DM_BUFFER_FULL_FLAG`: out: the answer did not fit; ask again, bigger.
        const BUFFER_FULL = 1 << 8;
        /// `DM_SKIP_BDGET_FLAG`.
        const SKIP_BDGET = 1 << 9;
        /// `DM_SKIP_LOCKFS_FLAG`.
        const SKIP_LOCKFS = 1 << 10;
        /// `DM_NOFLUSH_FLAG`.
        const NOFLUSH = 1 << 11;
        /// `DM_QUERY_INACTIVE_TABLE_FLAG`.
        const QUERY_INACTIVE_TABLE = 1 << 12;
        /// `DM_UEVENT_GENERATED_FLAG`: out.
        const UEVENT_GENERATED = 1 << 13;
        /// `DM_UUID_FLAG`.
        const UUID = 1 << 14;
        /// `DM_SECURE_DATA_FLAG`: wipe kernel buffers (keys in tables).
        const SECURE_DATA = 1 << 15;
        /// `DM_DATA_OUT_FLAG`: out.
        const DATA_OUT = 1 << 16;
        /// `DM_DEFERRED_REMOVE`: in (remove): remove at last close; out: such a removal is pending.
        const DEFERRED_REMOVE = 1 << 17;
        /// `DM_INTERNAL_SUSPEND_FLAG`: out.
        const INTERNAL_SUSPEND = 1 << 18;
        /// `DM_IMA_MEASUREMENT_FLAG`.
        const IMA_MEASUREMENT = 1 << 19;
        // Bits of newer kernels.
        const _ = !0;
    }
}

/// A failed device-mapper step: the ioctl, the device name, the kernel's errno and, if
/// it logged any, its `device-mapper:` messages (read from `/dev/kmsg`):
/// `DM_TABLE_LOAD foo: Invalid argument (kernel: device-mapper: table: 253:0: verity: …)`.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {}{}", crate::format::escape::esc(.name), os_text(.source), fmt_messages(.messages))]
pub struct DmError {
    /// The ioctl (`DM_TABLE_LOAD`, …) or `open`/`mknod`.
    pub op: &'static str,
    /// The dm device name (or the path opened).
    pub name: String,
    /// The errno, or `InvalidInput` for a request we refused to send.
    #[source]
    pub source: io::Error,
    /// Kernel log lines about it (escaped for people), and notes on what cleaning up did.
    pub messages: Vec<String>,
}

fn fmt_messages(m: &[String]) -> String {
    if m.is_empty() {
        String::new()
    } else {
        format!(" (kernel: {})", m.join("; "))
    }
}

impl DmError {
    fn new(op: &'static str, name: &str, source: impl Into<io::Error>) -> Self {
        DmError {
            op,
            name: name.to_string(),
            source: source.into(),
            messages: Vec::new(),
        }
    }

    fn invalid(op: &'static str, name: &str, why: String) -> Self {
        DmError::new(op, name, io::Error::new(io::ErrorKind::InvalidInput, why))
    }

    /// errno for the C ABI.
    pub fn errno(&self) -> i32 {
        match self.source.raw_os_error() {
            Some(e) => e,
            None if self.source.kind() == io::ErrorKind::InvalidInput => libc::EINVAL,
            None => libc::EIO,
        }
    }
}

// --- buffers ---------------------------------------------------------------------------

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}
fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}
fn cstr(b: &[u8]) -> String {
    let end = memchr::memchr(0, b).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}
const fn align8(n: usize) -> usize {
    (n + 7) & !7
}

impl DmIoctl {
    /// Writes the header into the first 312 bytes of `b`, field by field at the offsets
    /// of the `#[repr(C)]` layout (native endianness, as the kernel reads it).
    fn encode(&self, b: &mut [u8]) {
        let b = &mut b[..HDR];
        for (i, v) in self.version.iter().enumerate() {
            put_u32(b, offset_of!(DmIoctl, version) + 4 * i, *v);
        }
        put_u32(b, offset_of!(DmIoctl, data_size), self.data_size);
        put_u32(b, offset_of!(DmIoctl, data_start), self.data_start);
        put_u32(b, offset_of!(DmIoctl, target_count), self.target_count);
        put_u32(b, offset_of!(DmIoctl, open_count), self.open_count as u32);
        put_u32(b, offset_of!(DmIoctl, flags), self.flags);
        put_u32(b, offset_of!(DmIoctl, event_nr), self.event_nr);
        put_u32(b, offset_of!(DmIoctl, padding), self.padding);
        put_u64(b, offset_of!(DmIoctl, dev), self.dev);
        b[offset_of!(DmIoctl, name)..][..DM_NAME_LEN].copy_from_slice(&self.name);
        b[offset_of!(DmIoctl, uuid)..][..DM_UUID_LEN].copy_from_slice(&self.uuid);
        b[offset_of!(DmIoctl, data)..][..7].copy_from_slice(&self.data);
    }

    /// Reads a header from the first 312 bytes of `b`.
    fn decode(b: &[u8]) -> DmIoctl {
        let b = &b[..HDR];
        let v = |i: usize| ne_u32(b, offset_of!(DmIoctl, version) + 4 * i).unwrap_or(0);
        let mut h = DmIoctl {
            version: [v(0), v(1), v(2)],
            data_size: ne_u32(b, offset_of!(DmIoctl, data_size)).unwrap_or(0),
            data_start: ne_u32(b, offset_of!(DmIoctl, data_start)).unwrap_or(0),
            target_count: ne_u32(b, offset_of!(DmIoctl, target_count)).unwrap_or(0),
            open_count: ne_u32(b, offset_of!(DmIoctl, open_count)).unwrap_or(0) as i32,
            flags: ne_u32(b, offset_of!(DmIoctl, flags)).unwrap_or(0),
            event_nr: ne_u32(b, offset_of!(DmIoctl, event_nr)).unwrap_or(0),
            padding: ne_u32(b, offset_of!(DmIoctl, padding)).unwrap_or(0),
            dev: ne_u64(b, offset_of!(DmIoctl, dev)).unwrap_or(0),
            name: [0; DM_NAME_LEN],
            uuid: [0; DM_UUID_LEN],
            data: [0; 7],
        };
        h.name
            .copy_from_slice(&b[offset_of!(DmIoctl, name)..][..DM_NAME_LEN]);
        h.uuid
            .copy_from_slice(&b[offset_of!(DmIoctl, uuid)..][..DM_UUID_LEN]);
        h.data.copy_from_slice(&b[offset_of!(DmIoctl, data)..][..7]);
        h
    }
}

impl DmTargetSpec {
    fn encode(&self, b: &mut [u8]) {
        let b = &mut b[..SPEC];
        put_u64(b, offset_of!(DmTargetSpec, sector_start), self.sector_start);
        put_u64(b, offset_of!(DmTargetSpec, length), self.length);
        put_u32(b, offset_of!(DmTargetSpec, status), self.status as u32);
        put_u32(b, offset_of!(DmTargetSpec, next), self.next);
        b[offset_of!(DmTargetSpec, target_type)..][..DM_MAX_TYPE_NAME]
            .copy_from_slice(&self.target_type);
    }

    fn decode(b: &[u8]) -> DmTargetSpec {
        let b = &b[..SPEC];
        let mut t = DmTargetSpec {
            sector_start: ne_u64(b, offset_of!(DmTargetSpec, sector_start)).unwrap_or(0),
            length: ne_u64(b, offset_of!(DmTargetSpec, length)).unwrap_or(0),
            status: ne_u32(b, offset_of!(DmTargetSpec, status)).unwrap_or(0) as i32,
            next: ne_u32(b, offset_of!(DmTargetSpec, next)).unwrap_or(0),
            target_type: [0; DM_MAX_TYPE_NAME],
        };
        t.target_type
            .copy_from_slice(&b[offset_of!(DmTargetSpec, target_type)..][..DM_MAX_TYPE_NAME]);
        t
    }
}

/// A table line for [`Dm::create`]: `start length type params`, in 512-byte sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmTarget<'a> {
    /// First sector.
    pub start: u64,
    /// Sectors.
    pub length: u64,
    /// Target type ("verity").
    pub target_type: &'a str,
    /// The target's parameter string. The kernel splits it at spaces and treats `\` as
    /// an escape (as `dmsetup` does); it may not contain NUL.
    pub params: &'a str,
}

/// Checks a device name and uuid the way the kernel will (`check_name()`,
/// `invalid_str()`), so that the error names the problem instead of a bare `EINVAL`.
fn check_name(op: &'static str, name: &str, uuid: Option<&str>) -> Result<(), DmError> {
    if name.is_empty() || name.len() >= DM_NAME_LEN {
        return Err(DmError::invalid(
            op,
            name,
            format!("device name must be 1 to {} bytes", DM_NAME_LEN - 1),
        ));
    }
    if name.contains('/') || name.contains('\0') || name == "." || name == ".." {
        return Err(DmError::invalid(
            op,
            name,
            "device name may not contain '/' or NUL, nor be '.' or '..'".into(),
        ));
    }
    if let Some(u) = uuid {
        if u.len() >= DM_UUID_LEN || u.contains('\0') {
            return Err(DmError::invalid(
                op,
                name,
                format!(
                    "uuid must be at most {} bytes, without NUL",
                    DM_UUID_LEN - 1
                ),
            ));
        }
    }
    Ok(())
}

/// A request buffer: the header for `name` (and `uuid`), `flags`, and `payload` zero
/// bytes after it; `data_size` covers the whole buffer and `data_start` is 312.
fn request(name: &str, uuid: Option<&str>, flags: DmFlags, payload: usize) -> Vec<u8> {
    let mut buf = vec![0u8; HDR + payload];
    let mut h = DmIoctl {
        version: [DM_VERSION_MAJOR, 0, 0],
        data_size: buf.len() as u32,
        data_start: HDR as u32,
        target_count: 0,
        open_count: 0,
        flags: flags.bits(),
        event_nr: 0,
        padding: 0,
        dev: 0,
        name: [0; DM_NAME_LEN],
        uuid: [0; DM_UUID_LEN],
        data: [0; 7],
    };
    h.name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(u) = uuid {
        h.uuid[..u.len()].copy_from_slice(u.as_bytes());
    }
    h.encode(&mut buf);
    buf
}

/// The `DM_TABLE_LOAD` request for `targets`: header, then for each target a
/// `dm_target_spec` and its parameters with NUL, padded to 8 bytes, the spec's `next`
/// pointing past that padding (as libdevmapper lays it out; the kernel refuses specs
/// that are not 8-byte aligned). The buffer is exactly as long as that.
fn table_load_request(
    name: &str,
    targets: &[DmTarget<'_>],
    read_only: bool,
) -> Result<Vec<u8>, DmError> {
    const OP: &str = "DM_TABLE_LOAD";
    check_name(OP, name, None)?;
    if targets.is_empty() {
        return Err(DmError::invalid(OP, name, "a table needs a target".into()));
    }
    let mut payload = 0;
    for t in targets {
        if t.target_type.is_empty() || t.target_type.len() >= DM_MAX_TYPE_NAME {
            return Err(DmError::invalid(
                OP,
                name,
                format!("target type {:?} must be 1 to 15 bytes", t.target_type),
            ));
        }
        if t.params.contains('\0') || t.target_type.contains('\0') {
            return Err(DmError::invalid(
                OP,
                name,
                "target parameters contain NUL".into(),
            ));
        }
        payload += SPEC + align8(t.params.len() + 1);
    }
    if HDR + payload > u32::MAX as usize {
        return Err(DmError::invalid(OP, name, "table too large".into()));
    }
    let flags = if read_only {
        DmFlags::READONLY
    } else {
        DmFlags::empty()
    };
    let mut buf = request(name, None, flags, payload);
    put_u32(
        &mut buf,
        offset_of!(DmIoctl, target_count),
        targets.len() as u32,
    );
    let mut off = HDR;
    for t in targets {
        let next = SPEC + align8(t.params.len() + 1);
        let mut spec = DmTargetSpec {
            sector_start: t.start,
            length: t.length,
            status: 0,
            next: next as u32,
            target_type: [0; DM_MAX_TYPE_NAME],
        };
        spec.target_type[..t.target_type.len()].copy_from_slice(t.target_type.as_bytes());
        spec.encode(&mut buf[off..]);
        buf[off + SPEC..][..t.params.len()].copy_from_slice(t.params.as_bytes());
        off += next;
    }
    debug_assert_eq!(off, buf.len());
    Ok(buf)
}

/// One target of a `DM_TABLE_STATUS` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetStatus {
    /// First sector.
    pub start: u64,
    /// Sectors.
    pub length: u64,
    /// "verity", …
    pub target_type: String,
    /// The status line (verity: `V` verified so far, `C` corruption seen), or with
    /// [`DmFlags::STATUS_TABLE`] the table's parameter line.
    pub text: String,
}

/// Parses the targets of a `DM_TABLE_STATUS` answer, checking every offset against
/// the answer's `data_size` (a parser takes bytes, with limits). In answers the kernel
/// sets each spec's `next` relative to the start of the data area, not to the spec.
fn parse_targets(buf: &[u8]) -> Result<Vec<TargetStatus>, &'static str> {
    if buf.len() < HDR {
        return Err("answer shorter than struct dm_ioctl");
    }
    let h = DmIoctl::decode(buf);
    let end = h.data_size as usize;
    let start = h.data_start as usize;
    if end > buf.len() || start < HDR || start > end {
        return Err("data_size/data_start outside the buffer");
    }
    if h.target_count as usize > (end - start) / SPEC {
        return Err("more targets than fit in the answer");
    }
    let mut out = Vec::with_capacity(h.target_count as usize);
    let mut off = start;
    for _ in 0..h.target_count {
        if off & 7 != 0 || off + SPEC > end {
            return Err("target spec outside the answer");
        }
        let spec = DmTargetSpec::decode(&buf[off..]);
        let text = &buf[off + SPEC..end];
        let Some(nul) = memchr::memchr(0, text) else {
            return Err("status text not NUL-terminated");
        };
        out.push(TargetStatus {
            start: spec.sector_start,
            length: spec.length,
            target_type: cstr(&spec.target_type),
            text: String::from_utf8_lossy(&text[..nul]).into_owned(),
        });
        off = start + spec.next as usize;
    }
    Ok(out)
}

// --- the ioctl -------------------------------------------------------------------------

/// One dm command on a whole request buffer. None of rustix's patterns fit: the
/// argument is a `struct dm_ioctl` followed by a variable-sized payload, read *and*
/// written by the kernel.
struct DmCmd<'a> {
    opcode: Opcode,
    buf: &'a mut [u8],
}

// SAFETY: every dm opcode (`_IOWR(0xfd, nr, struct dm_ioctl)`) takes a pointer to a
// buffer starting with `struct dm_ioctl`, from which the kernel reads, and into which it
// writes, at most `data_size` bytes; `dm_ioctl()` checks that `buf` is at least 312
// bytes and at least `data_size` long before making a `DmCmd`. The kernel may write the
// buffer, hence IS_MUTATING. Nothing is read back through the pointer here.
unsafe impl Ioctl for DmCmd<'_> {
    type Output = ();
    const IS_MUTATING: bool = true;

    fn opcode(&self) -> Opcode {
        self.opcode
    }

    fn as_ptr(&mut self) -> *mut std::ffi::c_void {
        self.buf.as_mut_ptr().cast()
    }

    unsafe fn output_from_ptr(_: IoctlOutput, _: *mut std::ffi::c_void) -> rustix::io::Result<()> {
        Ok(())
    }
}

/// `ioctl(ctl, op, buf)` for a dm request buffer.
fn dm_ioctl(ctl: BorrowedFd<'_>, op: Opcode, buf: &mut [u8]) -> rustix::io::Result<()> {
    assert!(
        buf.len() >= HDR
            && ne_u32(buf, offset_of!(DmIoctl, data_size)).is_some_and(|n| n as usize <= buf.len()),
        "dm request buffer shorter than its data_size"
    );
    // SAFETY: the assert above is the bound DmCmd's contract needs; `buf` lives across
    // the call and nothing else aliases it.
    retry_on_intr(|| unsafe {
        ioctl(
            ctl,
            DmCmd {
                opcode: op,
                buf: &mut *buf,
            },
        )
    })
}

// --- the device-mapper handle ------------------------------------------------------------

/// What `DM_DEV_STATUS` (and most other answers) say about a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmInfo {
    /// Device name.
    pub name: String,
    /// Uuid ("" if none).
    pub uuid: String,
    /// Block device number (major is dm's dynamic major, minor N of `/dev/dm-N`).
    pub dev: Dev,
    /// Openers (mounts, other tables, open fds).
    pub open_count: i32,
    /// State: [`DmFlags::ACTIVE_PRESENT`], [`DmFlags::SUSPEND`], [`DmFlags::READONLY`], …
    pub flags: DmFlags,
    /// Targets in the live table.
    pub target_count: u32,
    /// Event counter.
    pub event_nr: u32,
}

impl DmInfo {
    fn from_answer(buf: &[u8]) -> DmInfo {
        let h = DmIoctl::decode(buf);
        DmInfo {
            name: cstr(&h.name),
            uuid: cstr(&h.uuid),
            dev: h.dev as Dev,
            open_count: h.open_count,
            flags: DmFlags::from_bits_retain(h.flags),
            target_count: h.target_count,
            event_nr: h.event_nr,
        }
    }
}

/// A live device made by [`Dm::create`]. Plain data: the device stays until
/// [`Dm::remove`] (device-mapper names are global, like mounts).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "the device stays until Dm::remove"]
pub struct DmDevice {
    /// Device name.
    pub name: String,
    /// Uuid, if one was given.
    pub uuid: Option<String>,
    /// Block device number.
    pub dev: Dev,
    /// A block device node for it: `/dev/mapper/NAME` (made by us or by udev), or
    /// devtmpfs' `/dev/dm-N` where `/dev/mapper` cannot be written.
    pub path: PathBuf,
}

/// How [`Dm::remove`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The device is gone.
    Removed,
    /// The device is open (mounted); the kernel removes it at the last close.
    Deferred,
}

/// An open `/dev/mapper/control` after the version handshake.
#[derive(Debug)]
pub struct Dm {
    ctl: OwnedFd,
    version: [u32; 3],
}

/// Answers of status requests start at 16 KiB and grow to at most 4 MiB.
const STATUS_BUF_START: usize = 16 * 1024;
const STATUS_BUF_MAX: usize = 4 * 1024 * 1024;

impl Dm {
    /// Opens `/dev/mapper/control` and makes the `DM_VERSION` handshake (interface 4.x).
    ///
    /// Without the node (no devtmpfs), it is created as misc device 10:M, M from
    /// `/sys/class/misc/device-mapper/dev` or `/proc/misc`, else 236, whose open makes
    /// the kernel load dm-mod. If opening fails, whatever was created is removed again.
    ///
    /// # Errors
    /// `ENODEV` (or `ENOENT`): the kernel has no device-mapper.
    pub fn open() -> Result<Dm, DmError> {
        let ctl = open_control()?;
        let mut buf = request("", None, DmFlags::empty(), 0);
        dm_ioctl(ctl.as_fd(), DM_VERSION, &mut buf)
            .map_err(|e| DmError::new("DM_VERSION", DM_CONTROL, e))?;
        let version = DmIoctl::decode(&buf).version;
        if version[0] != DM_VERSION_MAJOR {
            return Err(DmError::new(
                "DM_VERSION",
                DM_CONTROL,
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "kernel speaks dm interface {}.{}.{}, not 4.x",
                        version[0], version[1], version[2]
                    ),
                ),
            ));
        }
        Ok(Dm { ctl, version })
    }

    /// The kernel's dm interface version (e.g. `[4, 47, 0]` on Linux 6.1).
    pub fn version(&self) -> [u32; 3] {
        self.version
    }

    fn call(
        &self,
        op: Opcode,
        op_name: &'static str,
        name: &str,
        buf: &mut [u8],
    ) -> Result<(), DmError> {
        dm_ioctl(self.ctl.as_fd(), op, buf).map_err(|e| DmError::new(op_name, name, e))
    }

    /// `DM_DEV_CREATE`: a new device `name` (and `uuid`), with no table, suspended.
    ///
    /// # Errors
    /// `EBUSY`: the name or uuid is taken; `EINVAL`: bad name.
    #[doc(alias = "DM_DEV_CREATE")]
    pub fn dev_create(&self, name: &str, uuid: Option<&str>) -> Result<DmInfo, DmError> {
        check_name("DM_DEV_CREATE", name, uuid)?;
        let mut buf = request(name, uuid, DmFlags::empty(), 0);
        self.call(DM_DEV_CREATE, "DM_DEV_CREATE", name, &mut buf)?;
        Ok(DmInfo::from_answer(&buf))
    }

    /// `DM_TABLE_LOAD`: loads `targets` into the inactive slot of `name`. The
    /// `read_only` flag decides the table's mode (dm-verity requires read-only).
    ///
    /// # Errors
    /// `EINVAL`: the target refused its parameters (the kernel logs why: the error
    /// carries those `device-mapper:` lines when `/dev/kmsg` is readable); `ENXIO`: no
    /// such device.
    #[doc(alias = "DM_TABLE_LOAD")]
    pub fn table_load(
        &self,
        name: &str,
        targets: &[DmTarget<'_>],
        read_only: bool,
    ) -> Result<(), DmError> {
        let mut buf = table_load_request(name, targets, read_only)?;
        let kmsg = Kmsg::start();
        self.call(DM_TABLE_LOAD, "DM_TABLE_LOAD", name, &mut buf)
            .map_err(|e| kmsg.annotate(e))
    }

    /// `DM_DEV_SUSPEND` without `DM_SUSPEND_FLAG`: resume, making a loaded table live.
    #[doc(alias = "DM_DEV_SUSPEND")]
    pub fn dev_resume(&self, name: &str) -> Result<DmInfo, DmError> {
        check_name("DM_DEV_SUSPEND", name, None)?;
        let mut buf = request(name, None, DmFlags::empty(), 0);
        let kmsg = Kmsg::start();
        self.call(DM_DEV_SUSPEND, "DM_DEV_SUSPEND", name, &mut buf)
            .map_err(|e| kmsg.annotate(e))?;
        Ok(DmInfo::from_answer(&buf))
    }

    /// `DM_DEV_REMOVE`, with `DM_DEFERRED_REMOVE` if `deferred` (interface 4.27+).
    ///
    /// # Errors
    /// `ENXIO`: no such device; `EBUSY`: open and not `deferred`.
    #[doc(alias = "DM_DEV_REMOVE")]
    pub fn dev_remove(&self, name: &str, deferred: bool) -> Result<(), DmError> {
        check_name("DM_DEV_REMOVE", name, None)?;
        if deferred && self.version[1] < DM_VERSION_MINOR_DEFERRED {
            return Err(DmError::new(
                "DM_DEV_REMOVE",
                name,
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    "deferred removal needs dm 4.27 (Linux 3.13)",
                ),
            ));
        }
        let flags = if deferred {
            DmFlags::DEFERRED_REMOVE
        } else {
            DmFlags::empty()
        };
        let mut buf = request(name, None, flags, 0);
        self.call(DM_DEV_REMOVE, "DM_DEV_REMOVE", name, &mut buf)
    }

    /// `DM_DEV_STATUS`: the device's number, openers and state.
    ///
    /// # Errors
    /// `ENXIO`: no such device.
    #[doc(alias = "DM_DEV_STATUS")]
    pub fn dev_status(&self, name: &str) -> Result<DmInfo, DmError> {
        check_name("DM_DEV_STATUS", name, None)?;
        let mut buf = request(name, None, DmFlags::empty(), 0);
        self.call(DM_DEV_STATUS, "DM_DEV_STATUS", name, &mut buf)?;
        Ok(DmInfo::from_answer(&buf))
    }

    /// `DM_TABLE_STATUS` of the live table: each target's status line, or with
    /// [`DmFlags::STATUS_TABLE`] in `flags` its table line. When the kernel sets
    /// `DM_BUFFER_FULL_FLAG`, the request is repeated with a 4× larger buffer.
    #[doc(alias = "DM_TABLE_STATUS")]
    pub fn table_status(&self, name: &str, flags: DmFlags) -> Result<Vec<TargetStatus>, DmError> {
        const OP: &str = "DM_TABLE_STATUS";
        check_name(OP, name, None)?;
        let mut size = STATUS_BUF_START;
        loop {
            let mut buf = request(name, None, flags, size - HDR);
            self.call(DM_TABLE_STATUS, OP, name, &mut buf)?;
            let out =
                DmFlags::from_bits_retain(ne_u32(&buf, offset_of!(DmIoctl, flags)).unwrap_or(0));
            if out.contains(DmFlags::BUFFER_FULL) {
                if size >= STATUS_BUF_MAX {
                    return Err(DmError::new(OP, name, Errno::NOBUFS));
                }
                size *= 4;
                continue;
            }
            return parse_targets(&buf).map_err(|why| {
                DmError::new(OP, name, io::Error::new(io::ErrorKind::InvalidData, why))
            });
        }
    }

    /// The status line of each target (verity: `V` or `C`).
    pub fn status(&self, name: &str) -> Result<Vec<TargetStatus>, DmError> {
        self.table_status(name, DmFlags::empty())
    }

    /// The table line of each target, as the kernel reconstructs it.
    pub fn table(&self, name: &str) -> Result<Vec<TargetStatus>, DmError> {
        self.table_status(name, DmFlags::STATUS_TABLE)
    }

    /// Creates device `name` with `targets` live: `DM_DEV_CREATE`, `DM_TABLE_LOAD`,
    /// `DM_DEV_SUSPEND` (resume), then a node at `/dev/mapper/NAME`. If any step after
    /// the create fails, the device is removed again and the error says how that went.
    pub fn create(
        &self,
        name: &str,
        uuid: Option<&str>,
        targets: &[DmTarget<'_>],
        read_only: bool,
    ) -> Result<DmDevice, DmError> {
        // Refuse a bad table before anything exists.
        table_load_request(name, targets, read_only)?;
        let info = self.dev_create(name, uuid)?;
        let rollback = |mut e: DmError| {
            if let Err(r) = self.dev_remove(name, false) {
                e.messages.push(format!("removing it again failed: {r}"));
            }
            e
        };
        self.table_load(name, targets, read_only)
            .map_err(rollback)?;
        self.dev_resume(name).map_err(rollback)?;
        let path = make_node(name, info.dev).map_err(rollback)?;
        Ok(DmDevice {
            name: name.to_string(),
            uuid: uuid.map(str::to_string),
            dev: info.dev,
            path,
        })
    }

    /// A read-only dm-verity device over `sectors` 512-byte sectors of data:
    /// [`create`](Self::create) with one `verity` target whose table line is `params`
    /// (`1 <data maj:min> <hash maj:min> <data block> <hash block> <data blocks>
    /// <hash start block> <algorithm> <root hash> <salt> [options]`).
    ///
    /// The kernel checks blocks only when they are read: a wrong root hash or a
    /// corrupted block loads fine and then fails reads with `EIO`.
    pub fn create_verity(
        &self,
        name: &str,
        uuid: Option<&str>,
        params: &str,
        sectors: u64,
    ) -> Result<DmDevice, DmError> {
        let target = DmTarget {
            start: 0,
            length: sectors,
            target_type: "verity",
            params,
        };
        self.create(name, uuid, &[target], true)
    }

    /// Removes device `name` and the `/dev/mapper/NAME` node we made for it.
    ///
    /// With `deferred`, an open (mounted) device is removed by the kernel at its last
    /// close; [`Removal`] says which happened.
    pub fn remove(&self, name: &str, deferred: bool) -> Result<Removal, DmError> {
        let dev = self.dev_status(name).ok().map(|i| i.dev);
        self.dev_remove(name, deferred)?;
        if let Some(dev) = dev {
            remove_node(name, dev);
        }
        if !deferred {
            return Ok(Removal::Removed);
        }
        match self.dev_status(name) {
            // Still there: the kernel marked it (DmFlags::DEFERRED_REMOVE in its status).
            Ok(_) => Ok(Removal::Deferred),
            Err(e) if e.errno() == libc::ENXIO => Ok(Removal::Removed),
            Err(e) => Err(e),
        }
    }
}

impl AsFd for Dm {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.ctl.as_fd()
    }
}

/// Opens (or creates, then opens) `/dev/mapper/control`.
fn open_control() -> Result<OwnedFd, DmError> {
    let open = || {
        retry_on_intr(|| {
            rustix::fs::open(DM_CONTROL, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        })
    };
    match open() {
        Err(Errno::NOENT) => {}
        r => return r.map_err(|e| DmError::new("open", DM_CONTROL, e)),
    }
    let dev = read_devnum("/sys/class/misc/device-mapper/dev")
        .or_else(proc_misc_minor)
        .unwrap_or_else(|| rustix::fs::makedev(MISC_MAJOR, MAPPER_CTRL_MINOR));
    let made_dir = match rustix::fs::mkdir("/dev/mapper", Mode::from_raw_mode(0o755)) {
        Ok(()) => true,
        Err(Errno::EXIST) => false,
        Err(e) => return Err(DmError::new("mkdir", "/dev/mapper", e)),
    };
    let undo = |made_node: bool| {
        if made_node {
            let _ = rustix::fs::unlinkat(CWD, DM_CONTROL, AtFlags::empty());
        }
        if made_dir {
            let _ = rustix::fs::unlinkat(CWD, "/dev/mapper", AtFlags::REMOVEDIR);
        }
    };
    let made_node = match rustix::fs::mknodat(
        CWD,
        DM_CONTROL,
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o600),
        dev,
    ) {
        Ok(()) => true,
        Err(Errno::EXIST) => false,
        Err(e) => {
            undo(false);
            return Err(DmError::new("mknod", DM_CONTROL, e));
        }
    };
    open().map_err(|e| {
        undo(made_node);
        DmError::new("open", DM_CONTROL, e)
    })
}

/// `236 device-mapper` in `/proc/misc` → 10:236.
fn proc_misc_minor() -> Option<Dev> {
    let s = std::fs::read_to_string("/proc/misc").ok()?;
    s.lines().find_map(|l| {
        let (minor, name) = l.trim().split_once(' ')?;
        (name.trim() == "device-mapper")
            .then(|| minor.parse().ok())
            .flatten()
            .map(|m| rustix::fs::makedev(MISC_MAJOR, m))
    })
}

/// Is `path` (not followed) a block device node for `dev`?
fn is_node_for(path: &str, dev: Dev) -> bool {
    rustix::fs::statat(CWD, path, AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|st| {
        FileType::from_raw_mode(st.st_mode) == FileType::BlockDevice && st.st_rdev == dev
    })
}

/// Makes `/dev/mapper/NAME` for `dev`, or finds udev's (a symlink to `../dm-N`) or an
/// existing node. A stale block node from an earlier run is replaced. Where `/dev/mapper`
/// cannot be written, devtmpfs' `/dev/dm-N` is used if it is the right device.
fn make_node(name: &str, dev: Dev) -> Result<PathBuf, DmError> {
    let path = format!("/dev/mapper/{name}");
    let good = |p: &str| {
        rustix::fs::stat(p).is_ok_and(|st| {
            FileType::from_raw_mode(st.st_mode) == FileType::BlockDevice && st.st_rdev == dev
        })
    };
    if good(&path) {
        return Ok(PathBuf::from(path));
    }
    let r = (|| {
        match rustix::fs::mkdir("/dev/mapper", Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e),
        }
        if let Ok(st) = rustix::fs::statat(CWD, path.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            if FileType::from_raw_mode(st.st_mode) != FileType::BlockDevice {
                return Err(Errno::EXIST); // not ours to replace
            }
            rustix::fs::unlinkat(CWD, path.as_str(), AtFlags::empty())?;
        }
        match rustix::fs::mknodat(
            CWD,
            path.as_str(),
            FileType::BlockDevice,
            Mode::from_raw_mode(0o600),
            dev,
        ) {
            Ok(()) => Ok(()),
            // udev got there first
            Err(Errno::EXIST) if good(&path) => Ok(()),
            Err(e) => Err(e),
        }
    })();
    match r {
        Ok(()) => Ok(PathBuf::from(path)),
        Err(e) => {
            let devtmpfs = format!("/dev/dm-{}", rustix::fs::minor(dev));
            if good(&devtmpfs) {
                Ok(PathBuf::from(devtmpfs))
            } else {
                Err(DmError::new("mknod", &path, e))
            }
        }
    }
}

/// Removes `/dev/mapper/NAME` if it is a block node for `dev` (udev's symlinks are
/// udev's to remove).
fn remove_node(name: &str, dev: Dev) {
    let path = format!("/dev/mapper/{name}");
    if is_node_for(&path, dev) {
        let _ = rustix::fs::unlinkat(CWD, path.as_str(), AtFlags::empty());
    }
}

/// Catches what the kernel logs about a failing dm call: `/dev/kmsg`, opened
/// non-blocking and positioned at its end before the call, read after it. Best effort:
/// without `/dev/kmsg` (or `CAP_SYSLOG`) errors simply carry no kernel lines.
struct Kmsg(Option<OwnedFd>);

impl Kmsg {
    fn start() -> Kmsg {
        let fd = rustix::fs::open(
            "/dev/kmsg",
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()
        .filter(|fd| rustix::fs::seek(fd, rustix::fs::SeekFrom::End(0)).is_ok());
        Kmsg(fd)
    }

    /// New `device-mapper:` error and warning lines (at most 8).
    fn dm_lines(&self) -> Vec<String> {
        let Some(fd) = &self.0 else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        for _ in 0..256 {
            match rustix::io::read(fd, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    // "prio,seq,usec,flags;text\n key=value…": one record per read.
                    // Errors and warnings only (syslog level <= 4), not dm's chatter.
                    let rec = &buf[..n];
                    let Some(semi) = memchr::memchr(b';', rec) else {
                        continue;
                    };
                    let level = rec[..semi]
                        .split(|&c| c == b',')
                        .next()
                        .and_then(|p| std::str::from_utf8(p).ok()?.parse::<u32>().ok())
                        .map(|p| p & 7);
                    if level.is_some_and(|l| l > 4) {
                        continue;
                    }
                    let text = &rec[semi + 1..];
                    let text = &text[..memchr::memchr(b'\n', text).unwrap_or(text.len())];
                    // Kept escaped: the kernel's text, for people ([`esc_text`]).
                    let text = crate::format::escape::esc_text(text).to_string();
                    if text.contains("device-mapper:") && out.len() < 8 {
                        out.push(text);
                    }
                }
                Err(Errno::PIPE) => continue, // records overwritten meanwhile
                Err(_) => break,              // EAGAIN: nothing more
            }
        }
        out
    }

    fn annotate(&self, mut e: DmError) -> DmError {
        e.messages.extend(self.dm_lines());
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn opcodes_match_dm_ioctl_h() {
        // _IOWR(0xfd, nr, struct dm_ioctl) = 3 << 30 | 312 << 16 | 0xfd << 8 | nr
        assert_eq!(DM_VERSION as u64, 0xC138_FD00);
        assert_eq!(DM_DEV_CREATE as u64, 0xC138_FD03);
        assert_eq!(DM_DEV_REMOVE as u64, 0xC138_FD04);
        assert_eq!(DM_DEV_SUSPEND as u64, 0xC138_FD06);
        assert_eq!(DM_DEV_STATUS as u64, 0xC138_FD07);
        assert_eq!(DM_TABLE_LOAD as u64, 0xC138_FD09);
        assert_eq!(DM_TABLE_STATUS as u64, 0xC138_FD0C);
        assert_eq!(DmFlags::DEFERRED_REMOVE.bits(), 0x20000);
        assert_eq!(DmFlags::BUFFER_FULL.bits(), 0x100);
    }

    /// A plain header request, byte for byte.
    #[test]
    fn header_bytes() {
        let buf = request("ext", Some("EXTMERGE-1"), DmFlags::READONLY, 0);
        assert_eq!(buf.len(), 312);
        let mut want = vec![0u8; 312];
        want[0..4].copy_from_slice(&4u32.to_ne_bytes()); // version 4.0.0
        want[12..16].copy_from_slice(&312u32.to_ne_bytes()); // data_size
        want[16..20].copy_from_slice(&312u32.to_ne_bytes()); // data_start
        want[28..32].copy_from_slice(&1u32.to_ne_bytes()); // flags: DM_READONLY_FLAG
        want[48..51].copy_from_slice(b"ext"); // name
        want[176..186].copy_from_slice(b"EXTMERGE-1"); // uuid
        assert_eq!(buf, want);
        let h = DmIoctl::decode(&buf);
        assert_eq!(
            (cstr(&h.name), cstr(&h.uuid)),
            ("ext".into(), "EXTMERGE-1".into())
        );
        let mut again = vec![0u8; 312];
        h.encode(&mut again);
        assert_eq!(again, buf);
    }

    /// The exact bytes of a one-target `DM_TABLE_LOAD`.
    #[test]
    fn table_load_bytes() {
        let params = "1 7:0 7:1 4096 4096 3 1 sha256 abcd 1234"; // 40 bytes
        let t = DmTarget {
            start: 0,
            length: 24,
            target_type: "verity",
            params,
        };
        let buf = table_load_request("foo", &[t], true).unwrap();
        // 312 header + 40 spec + 40 params + NUL, padded to 48.
        assert_eq!(buf.len(), 312 + 40 + 48);
        let mut want = vec![0u8; 400];
        want[0..4].copy_from_slice(&4u32.to_ne_bytes());
        want[12..16].copy_from_slice(&400u32.to_ne_bytes()); // data_size
        want[16..20].copy_from_slice(&312u32.to_ne_bytes()); // data_start
        want[20..24].copy_from_slice(&1u32.to_ne_bytes()); // target_count
        want[28..32].copy_from_slice(&1u32.to_ne_bytes()); // flags: DM_READONLY_FLAG
        want[48..51].copy_from_slice(b"foo");
        // dm_target_spec at 312
        want[312..320].copy_from_slice(&0u64.to_ne_bytes()); // sector_start
        want[320..328].copy_from_slice(&24u64.to_ne_bytes()); // length
        want[328..332].copy_from_slice(&0u32.to_ne_bytes()); // status
        want[332..336].copy_from_slice(&88u32.to_ne_bytes()); // next = 40 + 48
        want[336..342].copy_from_slice(b"verity");
        want[352..392].copy_from_slice(params.as_bytes());
        assert_eq!(buf, want);
        assert_eq!(buf[392], 0, "NUL-terminated");
    }

    #[test]
    fn table_load_alignment() {
        for len in 0..20 {
            let params = "x".repeat(len);
            let targets = [
                DmTarget {
                    start: 0,
                    length: 8,
                    target_type: "linear",
                    params: &params,
                },
                DmTarget {
                    start: 8,
                    length: 8,
                    target_type: "zero",
                    params: "",
                },
            ];
            let buf = table_load_request("a", &targets, false).unwrap();
            assert_eq!(buf.len() % 8, 0);
            assert_eq!(ne_u32(&buf, 12).unwrap() as usize, buf.len());
            assert_eq!(ne_u32(&buf, 28).unwrap(), 0, "read-write table");
            let s0 = DmTargetSpec::decode(&buf[312..]);
            assert_eq!(s0.next as usize, 40 + align8(len + 1));
            assert_eq!(s0.next % 8, 0);
            let off1 = 312 + s0.next as usize;
            let s1 = DmTargetSpec::decode(&buf[off1..]);
            assert_eq!((s1.sector_start, cstr(&s1.target_type)), (8, "zero".into()));
            assert_eq!(&buf[312 + 40..][..len], params.as_bytes());
            assert_eq!(buf[312 + 40 + len], 0);
            // The kernel's next_target() check: room for a spec and a NUL after each.
            assert!(buf.len() - 40 > 312);
            assert!(buf.len() - off1 > 40);
        }
    }

    #[test]
    fn bad_requests_are_refused_before_the_kernel() {
        let t = |p| DmTarget {
            start: 0,
            length: 8,
            target_type: "verity",
            params: p,
        };
        for (name, targets) in [
            ("", vec![t("x")]),
            ("a/b", vec![t("x")]),
            ("..", vec![t("x")]),
            (&*"n".repeat(128), vec![t("x")]),
            ("ok", vec![]),
            ("ok", vec![t("a\0b")]),
        ] {
            let e = table_load_request(name, &targets, true).unwrap_err();
            assert_eq!((e.op, e.errno()), ("DM_TABLE_LOAD", libc::EINVAL), "{e}");
        }
        let long_type = DmTarget {
            target_type: "sixteen-letters!",
            ..t("x")
        };
        assert!(table_load_request("ok", &[long_type], true).is_err());
        assert!(table_load_request(&"n".repeat(127), &[t("x")], true).is_ok());
        let e = check_name("DM_DEV_CREATE", "x", Some(&"u".repeat(129))).unwrap_err();
        assert!(
            e.to_string().starts_with("DM_DEV_CREATE x: uuid must be"),
            "{e}"
        );
    }

    /// A status answer as the kernel lays it out (`next` from the data start).
    fn answer(targets: &[(u64, u64, &str, &str)], size: usize) -> Vec<u8> {
        let mut buf = request("foo", None, DmFlags::empty(), size - HDR);
        put_u32(
            &mut buf,
            offset_of!(DmIoctl, target_count),
            targets.len() as u32,
        );
        let mut rel = 0;
        for (start, len, ty, text) in targets {
            let off = HDR + rel;
            let next = align8(rel + SPEC + text.len() + 1);
            let mut spec = DmTargetSpec {
                sector_start: *start,
                length: *len,
                status: 0,
                next: next as u32,
                target_type: [0; 16],
            };
            spec.target_type[..ty.len()].copy_from_slice(ty.as_bytes());
            spec.encode(&mut buf[off..]);
            buf[off + SPEC..][..text.len()].copy_from_slice(text.as_bytes());
            rel = next;
        }
        put_u32(&mut buf, offset_of!(DmIoctl, data_size), (HDR + rel) as u32);
        buf
    }

    #[test]
    fn status_answers_parse() {
        let buf = answer(&[(0, 24, "verity", "V"), (24, 8, "linear", "7:0 0")], 1024);
        let got = parse_targets(&buf).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0],
            TargetStatus {
                start: 0,
                length: 24,
                target_type: "verity".into(),
                text: "V".into()
            }
        );
        assert_eq!((got[1].start, got[1].text.as_str()), (24, "7:0 0"));
        // No table: no targets.
        assert_eq!(parse_targets(&answer(&[], 512)).unwrap(), vec![]);
    }

    #[test]
    fn status_parser_rejects_garbage() {
        let good = answer(&[(0, 24, "verity", "C")], 1024);
        let mut b = good.clone();
        put_u32(&mut b, offset_of!(DmIoctl, data_size), 5000); // beyond the buffer
        assert!(parse_targets(&b).is_err());
        let mut b = good.clone();
        put_u32(&mut b, offset_of!(DmIoctl, target_count), 1000);
        assert!(parse_targets(&b).is_err());
        let mut b = good.clone();
        let end = ne_u32(&b, offset_of!(DmIoctl, data_size)).unwrap() as usize;
        b[HDR + SPEC..end].fill(b'x'); // text without NUL
        assert!(parse_targets(&b).is_err());
        let mut b = good.clone();
        put_u32(&mut b, offset_of!(DmIoctl, target_count), 2);
        put_u32(&mut b, HDR + offset_of!(DmTargetSpec, next), 3); // misaligned next
        assert!(parse_targets(&b).is_err());
        assert!(parse_targets(&good[..100]).is_err());
        // Every truncation is an error or a parse, never a panic.
        for n in 0..good.len() {
            let _ = parse_targets(&good[..n]);
        }
    }

    #[test]
    fn error_format() {
        // The errno text comes from strerror, whose shim under miri words it differently.
        let inval = crate::log::os_text(&std::io::Error::from(Errno::INVAL));
        assert!(inval.starts_with("Invalid argument"), "{inval}");
        let mut e = DmError::new("DM_TABLE_LOAD", "foo", Errno::INVAL);
        assert_eq!(e.to_string(), format!("DM_TABLE_LOAD foo: {inval}"));
        e.messages
            .push("device-mapper: table: 253:0: verity: Invalid root digest".into());
        assert_eq!(
            e.to_string(),
            format!("DM_TABLE_LOAD foo: {inval} (kernel: device-mapper: table: 253:0: verity: Invalid root digest)")
        );
        assert_eq!(e.errno(), libc::EINVAL);
    }

    /// On a kernel without device-mapper (the host): a clean error, and no
    /// `/dev/mapper` left behind by the attempt to create the control node.
    #[test]
    #[cfg_attr(miri, ignore = "needs the kernel (miri models no ioctl or keyctl)")]
    fn open_without_device_mapper() {
        let has_dm = std::fs::read_to_string("/proc/misc")
            .map(|s| s.contains("device-mapper"))
            .unwrap_or(true);
        if has_dm || Path::new("/dev/mapper").exists() || !rustix::process::getuid().is_root() {
            eprintln!("SKIP open_without_device_mapper: device-mapper present, or not root");
            return;
        }
        let e = Dm::open().unwrap_err();
        assert_eq!(e.op, "open");
        assert!(
            matches!(e.errno(), libc::ENODEV | libc::ENXIO | libc::ENOENT),
            "{e}"
        );
        assert!(
            !Path::new("/dev/mapper").exists(),
            "left /dev/mapper behind"
        );
        eprintln!("open_without_device_mapper: {e}");
    }
}

/// Tests against the real kernel, run in a VM by `tests/vm/run-dm-tests.sh`; they
/// need root, device-mapper and the images that script builds (`EXTMERGE_DM_IMAGES`).
/// Elsewhere they print SKIP, unless `EXTMERGE_VM` is set, which makes a missing
/// prerequisite a failure.
// Device-mapper in a VM: nothing miri can run.
#[cfg(all(test, not(miri)))]
mod vm_tests {
    use super::*;
    use crate::sys::loopdev::{LoopDevice, LoopOptions};
    use rustix::fs::{major, minor};
    use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};
    use std::io::{Read, Seek, SeekFrom};
    use std::path::Path;
    use std::time::Duration;

    struct Images {
        dir: PathBuf,
        root_hash: String,
        salt: String,
        data_blocks: u64,
        bad_offset: u64,
        hello: String,
    }

    fn read(dir: &Path, f: &str) -> String {
        std::fs::read_to_string(dir.join(f))
            .unwrap_or_else(|e| panic!("{}/{f}: {e}", dir.display()))
            .trim()
            .to_string()
    }

    /// Root, dm and the images, or SKIP (a failure under `EXTMERGE_VM`).
    fn setup(test: &str) -> Option<(Dm, Images)> {
        let required = std::env::var_os("EXTMERGE_VM").is_some();
        let skip = |why: String| {
            assert!(!required, "{test}: {why} (EXTMERGE_VM is set)");
            eprintln!("SKIP {test}: {why}");
            None
        };
        if !rustix::process::getuid().is_root() {
            return skip("not root".into());
        }
        let Some(dir) = std::env::var_os("EXTMERGE_DM_IMAGES") else {
            return skip("EXTMERGE_DM_IMAGES not set (tests/vm/run-dm-tests.sh runs these)".into());
        };
        let dm = match Dm::open() {
            Ok(dm) => dm,
            Err(e) => return skip(format!("no device-mapper: {e}")),
        };
        let dir = PathBuf::from(dir);
        let img = Images {
            root_hash: read(&dir, "root_hash"),
            salt: read(&dir, "salt"),
            data_blocks: read(&dir, "data_blocks").parse().unwrap(),
            bad_offset: read(&dir, "bad_offset").parse().unwrap(),
            hello: read(&dir, "hello"),
            dir,
        };
        Some((dm, img))
    }

    fn attach(img: &Images, file: &str) -> LoopDevice {
        let f = std::fs::File::open(img.dir.join(file)).unwrap();
        let opts = LoopOptions {
            read_only: true,
            autoclear: true,
            ..Default::default()
        };
        LoopDevice::attach(f.as_fd(), 0, 0, opts).unwrap()
    }

    /// The verity table line for data and hash loop devices, built by hand.
    fn params(data: &LoopDevice, hash: &LoopDevice, img: &Images, root_hash: &str) -> String {
        format!(
            "1 {}:{} {}:{} 4096 4096 {} 1 sha256 {} {}",
            major(data.dev()),
            minor(data.dev()),
            major(hash.dev()),
            minor(hash.dev()),
            img.data_blocks,
            root_hash,
            img.salt
        )
    }

    fn sysfs_gone(dev: Dev) -> bool {
        let p = format!("/sys/dev/block/{}:{}", major(dev), minor(dev));
        for _ in 0..500 {
            if !Path::new(&p).exists() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// No dm devices at all (in the VM nothing else makes them).
    fn no_dm_left() {
        let left: Vec<String> = std::fs::read_dir("/sys/block")
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("dm-"))
            .collect();
        assert!(left.is_empty(), "dm devices left: {left:?}");
    }

    fn read_block(path: &Path, block: u64) -> io::Result<Vec<u8>> {
        let mut f = std::fs::File::open(path)?;
        f.seek(SeekFrom::Start(block * 4096))?;
        let mut b = vec![0u8; 4096];
        f.read_exact(&mut b)?;
        Ok(b)
    }

    fn mount_ro(dev: &Path, at: &Path) -> io::Result<()> {
        Ok(mount(dev, at, "erofs", MountFlags::RDONLY, None)?)
    }

    #[test]
    fn vm_verity_good_image() {
        let Some((dm, img)) = setup("vm_verity_good_image") else {
            return;
        };
        let v = dm.version();
        eprintln!("dm interface {}.{}.{}", v[0], v[1], v[2]);
        assert_eq!(v[0], 4);
        assert!(v[1] >= DM_VERSION_MINOR_DEFERRED, "dm interface {v:?}");
        let data = attach(&img, "good.erofs");
        let hash = attach(&img, "good.verity");
        let name = "extmerge-t-good";
        let uuid = "EXTMERGE-TEST-good";
        let p = params(&data, &hash, &img, &img.root_hash);
        let sectors = img.data_blocks * 8;
        let d = dm.create_verity(name, Some(uuid), &p, sectors).unwrap();
        assert_eq!(d.path, Path::new("/dev/mapper/extmerge-t-good"));
        // The ioctl's dev is the real device number.
        let st = rustix::fs::stat(&d.path).unwrap();
        assert_eq!(st.st_rdev, d.dev);
        let sys = format!("/sys/dev/block/{}:{}", major(d.dev), minor(d.dev));
        assert_eq!(read(Path::new(&sys), "dm/name"), name);
        assert_eq!(read(Path::new(&sys), "dm/uuid"), uuid);
        assert_eq!(read(Path::new(&sys), "ro"), "1");
        assert_eq!(read(Path::new(&sys), "size"), sectors.to_string());
        // The dm table holds both loop devices open.
        let holders = std::fs::read_dir(format!("/sys/block/loop{}/holders", data.number()))
            .unwrap()
            .count();
        assert_eq!(holders, 1);

        let info = dm.dev_status(name).unwrap();
        assert_eq!(
            (info.dev, info.open_count, info.target_count),
            (d.dev, 0, 1)
        );
        assert!(
            info.flags
                .contains(DmFlags::ACTIVE_PRESENT | DmFlags::READONLY),
            "{info:?}"
        );
        assert!(!info.flags.contains(DmFlags::SUSPEND));
        assert_eq!(info.uuid, uuid);

        // Every byte, verified.
        let mut got = Vec::new();
        std::fs::File::open(&d.path)
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        let want = std::fs::read(img.dir.join("good.erofs")).unwrap();
        assert!(got == want, "verity device content differs from the image");
        let status = dm.status(name).unwrap();
        assert_eq!(status.len(), 1);
        assert_eq!(
            (status[0].target_type.as_str(), status[0].text.as_str()),
            ("verity", "V")
        );
        assert_eq!((status[0].start, status[0].length), (0, sectors));
        let table = dm.table(name).unwrap();
        eprintln!("table: {}", table[0].text);
        assert!(table[0].text.contains(&img.root_hash) && table[0].text.contains("sha256"));

        // mount(2) and read a file.
        let mnt = tempfile::tempdir().unwrap();
        mount_ro(&d.path, mnt.path()).unwrap();
        let hello = std::fs::read_to_string(mnt.path().join("usr/share/hello.txt")).unwrap();
        assert_eq!(hello.trim(), img.hello);
        assert_eq!(dm.dev_status(name).unwrap().open_count, 1);
        unmount(mnt.path(), UnmountFlags::empty()).unwrap();

        assert_eq!(dm.remove(name, false).unwrap(), Removal::Removed);
        assert!(sysfs_gone(d.dev));
        assert!(!d.path.exists(), "node left behind");
        assert_eq!(dm.dev_status(name).unwrap_err().errno(), libc::ENXIO);
        no_dm_left();
        let (dn, hn) = (data.number(), hash.number());
        drop((data, hash));
        for n in [dn, hn] {
            assert!(
                !Path::new(&format!("/sys/block/loop{n}/loop")).exists(),
                "loop{n} bound"
            );
        }
    }

    #[test]
    fn vm_verity_wrong_root_hash() {
        let Some((dm, img)) = setup("vm_verity_wrong_root_hash") else {
            return;
        };
        let data = attach(&img, "good.erofs");
        let hash = attach(&img, "good.verity");
        let h = &img.root_hash;
        let wrong = format!("{}{}", if h.starts_with('0') { '1' } else { '0' }, &h[1..]);
        let name = "extmerge-t-wrong";
        // The table loads: verity checks blocks when they are read.
        let d = dm
            .create_verity(
                name,
                None,
                &params(&data, &hash, &img, &wrong),
                img.data_blocks * 8,
            )
            .unwrap();
        let e = read_block(&d.path, 0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
        let mnt = tempfile::tempdir().unwrap();
        assert!(
            mount_ro(&d.path, mnt.path()).is_err(),
            "mounted with a wrong root hash"
        );
        assert_eq!(dm.status(name).unwrap()[0].text, "C");
        assert_eq!(dm.remove(name, false).unwrap(), Removal::Removed);
        assert!(sysfs_gone(d.dev));
        no_dm_left();
    }

    #[test]
    fn vm_verity_corrupted_block() {
        let Some((dm, img)) = setup("vm_verity_corrupted_block") else {
            return;
        };
        let data = attach(&img, "bad.erofs");
        let hash = attach(&img, "good.verity");
        let name = "extmerge-t-corrupt";
        let d = dm
            .create_verity(
                name,
                None,
                &params(&data, &hash, &img, &img.root_hash),
                img.data_blocks * 8,
            )
            .unwrap();
        let bad = img.bad_offset / 4096;
        assert!(bad > 0);
        read_block(&d.path, 0).expect("block 0 is intact");
        assert_eq!(dm.status(name).unwrap()[0].text, "V");
        let e = read_block(&d.path, bad).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "block {bad}: {e}");
        assert_eq!(dm.status(name).unwrap()[0].text, "C");
        assert_eq!(dm.remove(name, false).unwrap(), Removal::Removed);
        assert!(sysfs_gone(d.dev));
        no_dm_left();
    }

    #[test]
    fn vm_deferred_remove_while_mounted() {
        let Some((dm, img)) = setup("vm_deferred_remove_while_mounted") else {
            return;
        };
        let data = attach(&img, "good.erofs");
        let hash = attach(&img, "good.verity");
        let (dn, hn) = (data.number(), hash.number());
        let name = "extmerge-t-deferred";
        let d = dm
            .create_verity(
                name,
                None,
                &params(&data, &hash, &img, &img.root_hash),
                img.data_blocks * 8,
            )
            .unwrap();
        // Hand the loop devices to the dm table: with autoclear they go with it.
        drop((data.keep(), hash.keep()));
        let mnt = tempfile::tempdir().unwrap();
        mount_ro(&d.path, mnt.path()).unwrap();

        // Busy without deferral; nothing changes.
        let e = dm.remove(name, false).unwrap_err();
        assert_eq!((e.op, e.errno()), ("DM_DEV_REMOVE", libc::EBUSY));
        assert_eq!(
            e.to_string(),
            format!("DM_DEV_REMOVE {name}: Device or resource busy")
        );
        assert!(d.path.exists());

        assert_eq!(dm.remove(name, true).unwrap(), Removal::Deferred);
        let info = dm.dev_status(name).unwrap();
        assert!(info.flags.contains(DmFlags::DEFERRED_REMOVE), "{info:?}");
        assert!(!sysfs_gone_now(d.dev), "removed while mounted");
        let hello = std::fs::read_to_string(mnt.path().join("usr/share/hello.txt")).unwrap();
        assert_eq!(
            hello.trim(),
            img.hello,
            "still readable while removal is pending"
        );

        unmount(mnt.path(), UnmountFlags::empty()).unwrap();
        assert!(sysfs_gone(d.dev), "not removed after the unmount");
        assert_eq!(dm.dev_status(name).unwrap_err().errno(), libc::ENXIO);
        no_dm_left();
        // ... and the loop devices below went with it.
        for n in [dn, hn] {
            let p = format!("/sys/block/loop{n}/loop");
            let mut gone = false;
            for _ in 0..500 {
                if !Path::new(&p).exists() {
                    gone = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            assert!(gone, "loop{n} still bound after the unmount");
        }
    }

    fn sysfs_gone_now(dev: Dev) -> bool {
        !Path::new(&format!("/sys/dev/block/{}:{}", major(dev), minor(dev))).exists()
    }

    #[test]
    fn vm_failed_table_load_leaves_nothing() {
        let Some((dm, img)) = setup("vm_failed_table_load_leaves_nothing") else {
            return;
        };
        let data = attach(&img, "good.erofs");
        let hash = attach(&img, "good.verity");
        let name = "extmerge-t-badtable";
        // A root digest that is no hex: EINVAL, with the kernel's reason.
        let p = params(&data, &hash, &img, "xyz");
        let e = dm
            .create_verity(name, None, &p, img.data_blocks * 8)
            .unwrap_err();
        eprintln!("expected error: {e}");
        assert_eq!((e.op, e.errno()), ("DM_TABLE_LOAD", libc::EINVAL));
        assert!(e
            .to_string()
            .starts_with(&format!("DM_TABLE_LOAD {name}: Invalid argument")));
        assert!(
            e.messages.iter().any(|m| m.contains("verity")),
            "kernel reason missing: {:?}",
            e.messages
        );
        assert_eq!(dm.dev_status(name).unwrap_err().errno(), libc::ENXIO);
        assert!(!Path::new(&format!("/dev/mapper/{name}")).exists());
        no_dm_left();
        // An unknown hash algorithm: the crypto API's ENOENT comes through as is.
        let p = params(&data, &hash, &img, &img.root_hash).replace("sha256", "nosuchhash");
        let e = dm
            .create_verity(name, None, &p, img.data_blocks * 8)
            .unwrap_err();
        eprintln!("expected error: {e}");
        assert_eq!((e.op, e.errno()), ("DM_TABLE_LOAD", libc::ENOENT), "{e}");
        assert_eq!(dm.dev_status(name).unwrap_err().errno(), libc::ENXIO);
        no_dm_left();

        // A name in use: EBUSY from DM_DEV_CREATE, and the existing device is untouched.
        let ok = params(&data, &hash, &img, &img.root_hash);
        let d = dm
            .create_verity(name, None, &ok, img.data_blocks * 8)
            .unwrap();
        let e = dm
            .create_verity(name, None, &ok, img.data_blocks * 8)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("DM_DEV_CREATE {name}: Device or resource busy")
        );
        assert!(dm.dev_status(name).is_ok() && d.path.exists());
        assert_eq!(dm.remove(name, false).unwrap(), Removal::Removed);
        let e = dm.remove(name, false).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("DM_DEV_REMOVE {name}: No such device or address")
        );
        no_dm_left();
    }

    #[test]
    fn vm_control_node_is_recreated() {
        let Some((dm, _img)) = setup("vm_control_node_is_recreated") else {
            return;
        };
        drop(dm);
        let st = rustix::fs::stat(DM_CONTROL).unwrap();
        rustix::fs::unlinkat(CWD, DM_CONTROL, AtFlags::empty()).unwrap();
        let dm = Dm::open().expect("open after recreating the control node");
        assert_eq!(dm.version()[0], 4);
        assert_eq!(rustix::fs::stat(DM_CONTROL).unwrap().st_rdev, st.st_rdev);
    }
}
