//! Listing: discovered extensions with the verdict a merge would give them.

use std::ffi::{c_char, c_int, CString};

use extmerge::inspect::discover::ImageKind;
use extmerge::inspect::release::Verdict;
use extmerge::log::Level;

use crate::ffi::{self, cstring, ctx_call, log_lazy, obj_get, Error};
use crate::{class_to_c, extmerge_context};

/// The extension will be merged.
pub const EXTMERGE_VERDICT_MATCH: c_int = 0;
/// The extension is skipped; extmerge_entry_get_reason() says why.
pub const EXTMERGE_VERDICT_SKIP: c_int = 1;
/// The extension cannot be used: a disk image that is broken or that the image policy
/// refuses; extmerge_entry_get_reason() has the error. extmerge_merge() fails on it.
pub const EXTMERGE_VERDICT_UNUSABLE: c_int = 2;

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
    let core = c.core(0)?;
    let mut entries = Vec::new();
    for &class in c.classes() {
        // The CLI's `plan`, the same call: as root disk images are mounted (and
        // released again) to read their extension-release.
        let p = core.plan(class)?;
        let (cands, skipped) = (p.candidates, p.skipped);
        for s in &skipped {
            log_lazy(Level::Info, || {
                format!(
                    "Skipping {}: {}",
                    extmerge::format::escape::esc(&root.display_path(&s.path)),
                    s.reason
                )
            });
        }
        for cand in cands {
            let (verdict, reason) = match &cand.verdict {
                Verdict::Match => (EXTMERGE_VERDICT_MATCH, None),
                Verdict::Mismatch(r) => (EXTMERGE_VERDICT_SKIP, Some(cstring(r))),
                Verdict::Unusable(r) => (EXTMERGE_VERDICT_UNUSABLE, Some(cstring(r))),
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
/// extmerge_context_set_force() every one matches), with the verdicts of `extmerge
/// plan`. Entries come per class (confext first for EXTMERGE_CLASS_BOTH), by name
/// within a class. Directory entries that are not extensions at all (bad names, wrong
/// file types, shadowed) are not listed; they are logged at LOG_INFO.
///
/// Disk images (EXTMERGE_KIND_RAW, EXTMERGE_KIND_BLOCK) are judged by their
/// extension-release only when the caller's effective user is root: they are then
/// opened as a merge opens them (loop device, dm-verity, the context's image policy),
/// mounted in a staging area below /run/extmerge and released again before the call
/// returns. A broken or refused image is an entry with EXTMERGE_VERDICT_UNUSABLE and
/// the error as its reason. Otherwise disk images are EXTMERGE_VERDICT_SKIP, with a
/// reason saying they are read when mounted.
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

/// Returns EXTMERGE_VERDICT_MATCH, EXTMERGE_VERDICT_SKIP or EXTMERGE_VERDICT_UNUSABLE, or
/// -EINVAL for a NULL entry.
///
/// Reads only: may run concurrently with other getters, not with freeing the list.
#[no_mangle]
pub extern "C" fn extmerge_entry_get_verdict(e: *const extmerge_entry) -> c_int {
    obj_get(e, -libc::EINVAL, |e| e.verdict)
}

/// Returns why the extension is skipped, for people ("ID=fedora does not match host
/// ID=debian"), or why it is unusable (the image's path and the error); NULL when it
/// matches (or for a NULL entry). Owned by the list. Values in it are escaped as in
/// extmerge_context_last_error(); the name and the path getters return the values as
/// they are.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        extmerge_context_free, extmerge_context_new, extmerge_context_set_class,
        extmerge_context_set_log_fn, extmerge_context_set_root, EXTMERGE_CLASS_SYSEXT,
    };
    use extmerge::format::class::Class;
    use extmerge::options::Options;
    use std::ffi::CStr;
    use std::path::{Path, PathBuf};

    /// (name, verdict, reason) of one entry.
    type Row = (String, c_int, Option<String>);

    fn write(path: &Path, data: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }

    fn text(p: *const c_char) -> Option<String> {
        // SAFETY: NULL or a string owned by the list, which is alive.
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }

    /// The sysext entries of `extmerge_list_new()` on `root`.
    fn c_list(root: &Path) -> Vec<Row> {
        let mut ctx: *mut extmerge_context = std::ptr::null_mut();
        assert_eq!(extmerge_context_new(&mut ctx), 0);
        assert_eq!(
            extmerge_context_set_log_fn(ctx, None, std::ptr::null_mut()),
            0
        );
        let r = cstring(root.to_str().unwrap());
        assert_eq!(extmerge_context_set_root(ctx, r.as_ptr()), 0);
        assert_eq!(extmerge_context_set_class(ctx, EXTMERGE_CLASS_SYSEXT), 0);
        let mut list: *mut extmerge_list = std::ptr::null_mut();
        assert_eq!(extmerge_list_new(ctx, &mut list), 0);
        let mut rows = Vec::new();
        loop {
            let e = extmerge_list_next(list);
            if e.is_null() {
                break;
            }
            rows.push((
                text(extmerge_entry_get_name(e)).unwrap(),
                extmerge_entry_get_verdict(e),
                text(extmerge_entry_get_reason(e)),
            ));
        }
        extmerge_list_free(list);
        extmerge_context_free(ctx);
        rows
    }

    /// The candidates of the plan `extmerge plan` shows for `root`.
    fn cli_plan(root: &Path) -> Vec<Row> {
        let opts = Options {
            root: root.to_path_buf(),
            ..Options::default()
        };
        let p = extmerge::context::Context::new(opts, &[Class::Sysext])
            .plan(Class::Sysext)
            .unwrap();
        p.candidates
            .iter()
            .map(|c| {
                let (v, reason) = match &c.verdict {
                    Verdict::Match => (EXTMERGE_VERDICT_MATCH, None),
                    Verdict::Mismatch(r) => (EXTMERGE_VERDICT_SKIP, Some(r.clone())),
                    Verdict::Unusable(r) => (EXTMERGE_VERDICT_UNUSABLE, Some(r.clone())),
                };
                (c.image.name.clone(), v, reason)
            })
            .collect()
    }

    /// Private mount namespace for this thread, with its own /run (the opener stages
    /// image mounts in /run/extmerge).
    fn enter_private_ns() -> bool {
        // SAFETY: unshare(2) with a flag; affects this thread only.
        if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
            return false;
        }
        let flags = libc::MS_REC | libc::MS_PRIVATE;
        // SAFETY: NUL-terminated strings that outlive the calls; NULL data.
        unsafe {
            libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                std::ptr::null(),
                flags,
                std::ptr::null(),
            ) == 0
                && libc::mount(
                    c"tmpfs".as_ptr(),
                    c"/run".as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV,
                    c"mode=0755".as_ptr().cast(),
                ) == 0
        }
    }

    /// As root: the C list gives exactly the verdicts of the CLI's `plan` on the same
    /// root — a raw erofs image judged by its own extension-release, a broken one
    /// unusable with the error naming it — not "read when it is mounted".
    #[test]
    fn list_verdicts_are_those_of_plan() {
        // SAFETY: geteuid takes no arguments and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIP: needs root");
            return;
        }
        if !Path::new("/usr/bin/mkfs.erofs").exists() {
            eprintln!("SKIP: needs mkfs.erofs");
            return;
        }
        let base: PathBuf =
            std::env::temp_dir().join(format!("extmerge-capi-list.{}", std::process::id()));
        let b = base.clone();
        let res = std::thread::spawn(move || {
            assert!(enter_private_ns(), "private mount namespace");
            let root = b.join("root");
            let ext = root.join("var/lib/extensions");
            write(&root.join("etc/os-release"), b"ID=testos\nVERSION_ID=1\n");
            write(&root.join("usr/share/host"), b"host\n");
            let rel = |n: &str| format!("usr/lib/extension-release.d/extension-release.{n}");
            write(
                &ext.join("dir").join(rel("dir")),
                b"ID=testos\nVERSION_ID=1\n",
            );
            write(&ext.join("dir/usr/share/dir"), b"dir\n");
            write(
                &ext.join("other").join(rel("other")),
                b"ID=otheros\nVERSION_ID=1\n",
            );
            let tree = b.join("tree");
            write(&tree.join(rel("img")), b"ID=testos\nVERSION_ID=1\n");
            write(&tree.join("usr/share/img"), b"img\n");
            let o = std::process::Command::new("mkfs.erofs")
                .args(["--quiet", "-T0", "--all-root"])
                .arg(ext.join("img.raw"))
                .arg(&tree)
                .output()
                .unwrap();
            assert!(o.status.success(), "mkfs.erofs: {o:?}");
            write(&ext.join("junk.raw"), &[0x5a; 8192]);

            let c = c_list(&root);
            let junk = ext.join("junk.raw").display().to_string();
            let names: Vec<(&str, c_int)> = c.iter().map(|(n, v, _)| (n.as_str(), *v)).collect();
            assert_eq!(
                names,
                [
                    ("dir", EXTMERGE_VERDICT_MATCH),
                    ("img", EXTMERGE_VERDICT_MATCH),
                    ("junk", EXTMERGE_VERDICT_UNUSABLE),
                    ("other", EXTMERGE_VERDICT_SKIP),
                ],
                "{c:#?}"
            );
            let junk_reason = c[2].2.as_deref().unwrap_or_default();
            assert!(
                junk_reason.starts_with(&format!("{junk}: file system: ")),
                "{junk_reason}"
            );
            assert_eq!(
                c[3].2.as_deref(),
                Some("ID=otheros does not match host ID=testos")
            );
            assert_eq!(c, cli_plan(&root));
            // Nothing stays mounted after listing.
            let mi = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
            assert!(!mi.contains("/run/extmerge/"), "{mi}");
        })
        .join();
        // The namespace is gone with the thread: nothing is mounted below base here.
        let _ = std::fs::remove_dir_all(&base);
        if let Err(p) = res {
            std::panic::resume_unwind(p);
        }
    }
}
