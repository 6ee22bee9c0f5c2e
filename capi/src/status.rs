//! Status: which hierarchies are merged, with which extensions.

use std::ffi::{c_char, c_int, CString};

use crate::ffi::{self, cstring, ctx_call, obj_get, Error};
use crate::{class_to_c, extmerge_context};

/// The state of one hierarchy for one class. Opaque; owned by its status list.
pub struct extmerge_status_entry {
    hierarchy: CString,
    class: c_int,
    merged: bool,
    since_usec: u64,
    /// Owns the strings `extension_ptrs` points to.
    _extensions: Vec<CString>,
    /// NULL-terminated.
    extension_ptrs: Vec<*const c_char>,
}

/// An iterator over hierarchies and what is merged on them. Opaque; created by
/// extmerge_status_list_new(), released by extmerge_status_list_free(). Independent
/// of the context it was made from.
pub struct extmerge_status_list {
    cursor: ffi::Cursor<extmerge_status_entry>,
}

fn build(c: &extmerge_context) -> Result<extmerge_status_list, Error> {
    let mut entries = Vec::new();
    for (class, rows) in c.core(0)?.status()? {
        for row in rows {
            let merged = row.extensions.is_some();
            let exts: Vec<CString> = row
                .extensions
                .unwrap_or_default()
                .iter()
                .map(|s| cstring(s))
                .collect();
            let mut ptrs: Vec<*const c_char> = exts.iter().map(|s| s.as_ptr()).collect();
            ptrs.push(std::ptr::null());
            entries.push(extmerge_status_entry {
                hierarchy: cstring(&row.hierarchy),
                class: class_to_c(class),
                merged,
                since_usec: row.since_usec.unwrap_or(0),
                _extensions: exts,
                extension_ptrs: ptrs,
            });
        }
    }
    Ok(extmerge_status_list {
        cursor: ffi::Cursor::new(entries),
    })
}

/// Reads the merge state of the context's hierarchies (those that exist in the root)
/// for its class(es): one entry per hierarchy and class, confext first for
/// EXTMERGE_CLASS_BOTH, sorted by hierarchy within a class. Merges made by
/// systemd-sysext/systemd-confext are recognised too.
///
/// On success *ret is set to a new list, owned by the caller and released with
/// extmerge_status_list_free(); it does not refer to ctx and may outlive it. On failure
/// *ret is left untouched.
///
/// Returns 0, or -EINVAL (NULL ctx or ret, bad hierarchies) or the errno of reading the
/// root or the metadata; the last error names the path and the reason.
///
/// Thread-compatible: no other thread may use ctx during the call.
#[no_mangle]
pub extern "C" fn extmerge_status_list_new(
    ctx: *mut extmerge_context,
    ret: *mut *mut extmerge_status_list,
) -> c_int {
    ctx_call(ctx, "extmerge_status_list_new", |c| {
        if ret.is_null() {
            return Err(Error::inval("ret must not be NULL"));
        }
        let list = build(c)?;
        ffi::put(ret, Box::new(list));
        Ok(0)
    })
}

/// Returns the next entry of the status list, or NULL at the end (and for a NULL list).
///
/// The entry and its strings are owned by the list and valid until
/// extmerge_status_list_free(). Thread-compatible: one thread at a time per list.
#[no_mangle]
pub extern "C" fn extmerge_status_list_next(
    it: *mut extmerge_status_list,
) -> *const extmerge_status_entry {
    ffi::cursor_next(it, |l| &mut l.cursor)
}

/// Releases a status list and all its entries. Calling with NULL is fine. Must not be
/// called twice with the same value; pointers from the list are invalid afterwards.
///
/// Thread-compatible: no other thread may use the list or its entries during or after the call.
#[no_mangle]
pub extern "C" fn extmerge_status_list_free(it: *mut extmerge_status_list) {
    ffi::free_box(it)
}

/// Returns the hierarchy, as a path inside the context's root ("/usr"), owned by the
/// list; NULL for a NULL entry.
///
/// Reads only: may run concurrently with other getters, not with freeing the list.
#[no_mangle]
pub extern "C" fn extmerge_status_entry_get_hierarchy(
    e: *const extmerge_status_entry,
) -> *const c_char {
    obj_get(e, std::ptr::null(), |e| e.hierarchy.as_ptr())
}

/// Returns EXTMERGE_CLASS_SYSEXT or EXTMERGE_CLASS_CONFEXT, or -EINVAL for a NULL
/// entry.
///
/// Reads only: may run concurrently with other getters, not with freeing the list.
#[no_mangle]
pub extern "C" fn extmerge_status_entry_get_class(e: *const extmerge_status_entry) -> c_int {
    obj_get(e, -libc::EINVAL, |e| e.class)
}

/// Returns 1 if extensions of the entry's class are merged on the hierarchy, 0 if not,
/// -EINVAL for a NULL entry.
///
/// Reads only: may run concurrently with other getters, not with freeing the list.
#[no_mangle]
pub extern "C" fn extmerge_status_entry_is_merged(e: *const extmerge_status_entry) -> c_int {
    obj_get(e, -libc::EINVAL, |e| c_int::from(e.merged))
}

/// Returns the names of the merged extensions, bottom layer first, as a NULL-terminated
/// array of UTF-8 strings; empty (only the NULL) when nothing is merged. Array and
/// strings are owned by the list. NULL for a NULL entry.
///
/// Reads only: may run concurrently with other getters, not with freeing the list.
#[no_mangle]
pub extern "C" fn extmerge_status_entry_get_extensions(
    e: *const extmerge_status_entry,
) -> *const *const c_char {
    obj_get(e, std::ptr::null(), |e| e.extension_ptrs.as_ptr())
}

/// Returns when the hierarchy was merged, in microseconds since the epoch; 0 when it
/// is not merged (or for a NULL entry).
///
/// Reads only: may run concurrently with other getters, not with freeing the list.
#[no_mangle]
pub extern "C" fn extmerge_status_entry_get_since_usec(e: *const extmerge_status_entry) -> u64 {
    obj_get(e, 0, |e| e.since_usec)
}
