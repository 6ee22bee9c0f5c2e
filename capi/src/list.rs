//! Listing: discovered extensions with the verdict a merge would give them.

use std::ffi::{c_char, c_int, CString};

use extmerge::discover::ImageKind;
use extmerge::log::Level;
use extmerge::plan::{self, PlanError};
use extmerge::release::{HostIdentity, Verdict};

use crate::ffi::{self, cstring, ctx_call, log_lazy, obj_get, Error};
use crate::{class_to_c, extmerge_context};

/// The extension will be merged.
pub const EXTMERGE_VERDICT_MATCH: c_int = 0;
/// The extension is skipped; extmerge_entry_get_reason() says why.
pub const EXTMERGE_VERDICT_SKIP: c_int = 1;

/// A directory tree.
pub const EXTMERGE_KIND_DIRECTORY: c_int = 1;
/// A `*.raw` disk image or file system image.
pub const EXTMERGE_KIND_RAW: c_int = 2;
/// A block device.
pub const EXTMERGE_KIND_BLOCK: c_int = 3;

/// One discovered extension. Opaque; owned by its list.
pub struct extmerge_entry {
    name: CString,
    class: c_int,
    path: CString,
    kind: c_int,
    verdict: c_int,
    reason: Option<CString>,
    mtime_usec: u64,
}

/// An iterator over discovered extensions. Opaque; created by extmerge_list_new(),
/// released by extmerge_list_free(). Independent of the context it was made from.
pub struct extmerge_list {
    cursor: ffi::Cursor<extmerge_entry>,
}

fn kind_to_c(k: ImageKind) -> c_int {
    match k {
        ImageKind::Directory => EXTMERGE_KIND_DIRECTORY,
        ImageKind::Raw => EXTMERGE_KIND_RAW,
        ImageKind::Block => EXTMERGE_KIND_BLOCK,
    }
}

fn build(c: &extmerge_context) -> Result<extmerge_list, Error> {
    let root = c.open_root()?;
    let (initrd, scope) = plan::root_scope(&root);
    let host = HostIdentity::load(&root, scope).map_err(PlanError::from)?;
    let mut entries = Vec::new();
    for &class in c.classes() {
        let (cands, skipped) = plan::evaluate(&root, class, &host, initrd, c.opts.force)?;
        for s in &skipped {
            log_lazy(Level::Info, || {
                format!(
                    "Skipping {}: {}",
                    root.display_path(&s.path).display(),
                    s.reason
                )
            });
        }
        for cand in cands {
            let (verdict, reason) = match &cand.verdict {
                Verdict::Match => (EXTMERGE_VERDICT_MATCH, None),
                Verdict::Mismatch(r) => (EXTMERGE_VERDICT_SKIP, Some(cstring(r))),
            };
            entries.push(extmerge_entry {
                name: cstring(&cand.image.name),
                class: class_to_c(class),
                path: cstring(&root.display_path(&cand.image.path).to_string_lossy()),
                kind: kind_to_c(cand.image.kind),
                verdict,
                reason,
                mtime_usec: cand.image.mtime_usec.unwrap_or(0),
            });
        }
    }
    Ok(extmerge_list {
        cursor: ffi::Cursor::new(entries),
    })
}

/// Discovers the extensions of the context's class(es) in its root and judges each
/// one against the root's os-release as a merge with the same context would (with
/// extmerge_context_set_force() every one matches). Entries come per class (confext
/// first for EXTMERGE_CLASS_BOTH), by name within a class. Directory entries that are
/// not extensions at all (bad names, wrong file types, shadowed) are not listed; they
/// are logged at LOG_INFO.
///
/// On success *ret is set to a new list, owned by the caller and released with
/// extmerge_list_free(); it does not refer to ctx and may outlive it. On failure *ret
/// is left untouched.
///
/// Returns 0, or -EINVAL (NULL ctx or ret, an os-release without ID=), -ENOENT (no
/// os-release in the root) or the errno of reading the root; the last error names the
/// path and the reason.
///
/// Thread-compatible: no other thread may use ctx during the call.
#[no_mangle]
pub extern "C" fn extmerge_list_new(
    ctx: *mut extmerge_context,
    ret: *mut *mut extmerge_list,
) -> c_int {
    ctx_call(ctx, "extmerge_list_new", |c| {
        if ret.is_null() {
            return Err(Error::inval("ret must not be NULL"));
        }
        let list = build(c)?;
        ffi::put(ret, Box::new(list));
        Ok(0)
    })
}

/// Returns the next entry of the list, or NULL at the end (and for a NULL list).
///
/// The entry and its strings are owned by the list and valid until
/// extmerge_list_free(). Thread-compatible: one thread at a time per list.
#[no_mangle]
pub extern "C" fn extmerge_list_next(it: *mut extmerge_list) -> *const extmerge_entry {
    ffi::cursor_next(it, |l| &mut l.cursor)
}

/// Releases a list and all its entries. Calling with NULL is fine. Must not be called
/// twice with the same value; pointers from the list are invalid afterwards.
///
/// Thread-compatible: no other thread may use the list or its entries during or after the call.
#[no_mangle]
pub extern "C" fn extmerge_list_free(it: *mut extmerge_list) {
    ffi::free_box(it)
}

/// Returns the extension's name ("foo" for foo.raw, foo.sysext.raw, foo/ or foo.v/),
/// UTF-8, owned by the list; NULL for a NULL entry.
///
/// Reads only: may run concurrently with other getters, not with freeing the list.
#[no_mangle]
pub extern "C" fn extmerge_entry_get_name(e: *const extmerge_entry) -> *const c_char {
    obj_get(e, std::ptr::null(), |e| e.name.as_ptr())
}

/// Returns EXTMERGE_CLASS_SYSEXT or EXTMERGE_CLASS_CONFEXT, or -EINVAL for a NULL
/// entry.
///
/// Reads only: may run concurrently with other getters, not with freeing the list.
#[no_mangle]
pub extern "C" fn extmerge_entry_get_class(e: *const extmerge_entry) -> c_int {
    obj_get(e, -libc::EINVAL, |e| e.class)
}

/// Returns the path of the extension as seen from the caller: the root's path joined
/// with the entry's path inside the root ("/sysroot/var/lib/extensions/foo.raw"); for an
/// entry picked from a NAME.v/ directory, the picked file. Owned by the list; NULL for
/// a NULL entry.
///
/// Reads only: may run concurrently with other getters, not with freeing the list.
#[no_mangle]
pub extern "C" fn extmerge_entry_get_path(e: *const extmerge_entry) -> *const c_char {
    obj_get(e, std::ptr::null(), |e| e.path.as_ptr())
}

/// Returns EXTMERGE_KIND_DIRECTORY, EXTMERGE_KIND_RAW or EXTMERGE_KIND_BLOCK, or -EINVAL
/// for a NULL entry.
///
/// Reads only: may run concurrently with other getters, not with freeing the list.
#[no_mangle]
pub extern "C" fn extmerge_entry_get_kind(e: *const extmerge_entry) -> c_int {
    obj_get(e, -libc::EINVAL, |e| e.kind)
}

/// Returns EXTMERGE_VERDICT_MATCH or EXTMERGE_VERDICT_SKIP, or -EINVAL for a NULL entry.
///
/// Reads only: may run concurrently with other getters, not with freeing the list.
#[no_mangle]
pub extern "C" fn extmerge_entry_get_verdict(e: *const extmerge_entry) -> c_int {
    obj_get(e, -libc::EINVAL, |e| e.verdict)
}

/// Returns why the extension is skipped, for people ("ID=fedora does not match host
/// ID=debian"); NULL when it matches (or for a NULL entry). Owned by the list.
///
/// Reads only: may run concurrently with other getters, not with freeing the list.
#[no_mangle]
pub extern "C" fn extmerge_entry_get_reason(e: *const extmerge_entry) -> *const c_char {
    obj_get(e, std::ptr::null(), |e| ffi::opt_ptr(e.reason.as_ref()))
}

/// Returns the modification time of the extension in microseconds since the epoch, or
/// 0 if unknown (or for a NULL entry).
///
/// Reads only: may run concurrently with other getters, not with freeing the list.
#[no_mangle]
pub extern "C" fn extmerge_entry_get_mtime_usec(e: *const extmerge_entry) -> u64 {
    obj_get(e, 0, |e| e.mtime_usec)
}

/// Returns "directory", "raw" or "block" for an EXTMERGE_KIND_* value, NULL for any
/// other. The string is static. Thread-safe.
#[no_mangle]
pub extern "C" fn extmerge_kind_to_string(kind: c_int) -> *const c_char {
    ffi::guard(std::ptr::null(), || {
        let s: &'static [u8] = match kind {
            EXTMERGE_KIND_DIRECTORY => b"directory\0",
            EXTMERGE_KIND_RAW => b"raw\0",
            EXTMERGE_KIND_BLOCK => b"block\0",
            _ => return std::ptr::null(),
        };
        s.as_ptr().cast()
    })
}
