//! The kernel key retention service, as far as dm-verity signatures need it: a `user`
//! key holding a PKCS#7 root hash signature in the calling thread's keyring, named by
//! the `root_hash_sig_key_desc` option of a verity table line, removed again right
//! after the table load.
//!
//! The kernel (`CONFIG_DM_VERITY_VERIFY_ROOTHASH_SIG`) looks the key up with
//! `request_key("user", desc)` in the keyrings of the task that loads the table, and
//! checks the signature against its own trusted keyrings (builtin, secondary, on some
//! kernels the platform keyring). Nothing here verifies anything: the key is only the
//! envelope that carries the signature to the kernel.
//!
//! The thread keyring is private to the calling thread and disappears with it, so a key
//! left behind by a crash does not outlive the thread; [`UserKey`] still revokes and
//! unlinks its key when dropped.
//!
//! No libkeyutils: `add_key(2)` and `keyctl(2)` are called through `syscall(2)`.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;

/// `KEY_SPEC_THREAD_KEYRING` (<linux/keyctl.h>): the calling thread's keyring, created
/// on first use.
pub const KEY_SPEC_THREAD_KEYRING: i32 = -1;
/// `KEYCTL_REVOKE`: make a key unusable at once (it is garbage-collected later).
const KEYCTL_REVOKE: libc::c_long = 3;
/// `KEYCTL_UNLINK`: remove a key from a keyring.
const KEYCTL_UNLINK: libc::c_long = 9;
/// Largest payload of a `user` key (`user_preparse` in security/keys/user_defined.c).
pub const MAX_USER_KEY_PAYLOAD: usize = 32767;
/// Longest key description accepted (`keyctl`'s limit: a page minus the NUL).
pub const MAX_DESCRIPTION: usize = 4095;

/// A key serial number (`key_serial_t`).
pub type KeySerial = i32;

/// A `user` key added to the calling thread's keyring. Dropping it revokes the key and
/// unlinks it from that keyring (best effort); [`remove`](Self::remove) does the same
/// and reports errors.
///
/// Must be dropped on the thread that created it: the thread keyring is per thread.
#[derive(Debug)]
pub struct UserKey {
    serial: KeySerial,
    description: String,
    removed: bool,
}

impl UserKey {
    /// The key's serial number.
    pub fn serial(&self) -> KeySerial {
        self.serial
    }

    /// The description it was added with (what `root_hash_sig_key_desc` names).
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Revokes the key and unlinks it from the thread keyring. Revoking first makes it
    /// unusable even if the unlink fails (or somebody linked it elsewhere).
    ///
    /// # Errors
    /// The first failing `keyctl` call; the other is still attempted.
    pub fn remove(mut self) -> io::Result<()> {
        self.removed = true;
        let revoked = keyctl2(KEYCTL_REVOKE, self.serial, 0);
        let unlinked = keyctl2(KEYCTL_UNLINK, self.serial, KEY_SPEC_THREAD_KEYRING);
        revoked.and(unlinked)
    }
}

impl Drop for UserKey {
    fn drop(&mut self) {
        if !self.removed {
            let _ = keyctl2(KEYCTL_REVOKE, self.serial, 0);
            let _ = keyctl2(KEYCTL_UNLINK, self.serial, KEY_SPEC_THREAD_KEYRING);
        }
    }
}

/// `keyctl(op, a, b)` for the two-argument operations used here.
fn keyctl2(op: libc::c_long, a: KeySerial, b: KeySerial) -> io::Result<()> {
    // SAFETY: KEYCTL_REVOKE and KEYCTL_UNLINK take two integer arguments (key serials)
    // and no pointers; extra arguments are ignored by the kernel.
    let r = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            op,
            libc::c_long::from(a),
            libc::c_long::from(b),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `add_key("user", description, payload, len, KEY_SPEC_THREAD_KEYRING)`: adds (or
/// updates, if the thread keyring already holds one of that description) a `user` key
/// with `payload` to the calling thread's keyring.
///
/// # Errors
/// `EINVAL` for an empty or too long description, a description with NUL bytes, or a
/// payload that is empty or larger than [`MAX_USER_KEY_PAYLOAD`] (checked before the
/// call, with a message saying so); otherwise the kernel's errno (`EDQUOT`: key quota
/// exhausted, `ENOSYS`: kernel without keys).
pub fn add_user_key(description: &str, payload: &[u8]) -> io::Result<UserKey> {
    if description.is_empty() || description.len() > MAX_DESCRIPTION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "key description must have 1 to {MAX_DESCRIPTION} bytes, not {}",
                description.len()
            ),
        ));
    }
    if payload.is_empty() || payload.len() > MAX_USER_KEY_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a user key holds 1 to {MAX_USER_KEY_PAYLOAD} bytes, not {}",
                payload.len()
            ),
        ));
    }
    let desc = CString::new(description).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "key description contains a NUL byte",
        )
    })?;
    // SAFETY: add_key(2) reads the NUL-terminated type and description strings (both
    // live C strings here) and `payload.len()` bytes from `payload`, a live slice; it
    // writes nothing to our memory.
    let r = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            c"user".as_ptr(),
            desc.as_ptr(),
            payload.as_ptr(),
            payload.len(),
            libc::c_long::from(KEY_SPEC_THREAD_KEYRING),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let serial = KeySerial::try_from(r).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("add_key returned an out-of-range serial {r}"),
        )
    })?;
    Ok(UserKey {
        serial,
        description: description.to_string(),
        removed: false,
    })
}

/// Whether `errno` (from a verity table load with a signature) means the kernel refused
/// the signature: no trusted key for it, a bad or rejected signature, or the key gone.
pub fn is_signature_refusal(errno: i32) -> bool {
    refusal_reason(errno, &[]).is_some()
}

/// Why the kernel refused a root hash signature, from the errno of the verity table load
/// and the kernel's log lines about it (`kernel_log`, empty when unknown).
///
/// `verify_pkcs7_signature()` as dm-verity calls it (crypto/asymmetric_keys/pkcs7_trust.c)
/// gives `ENOKEY` when no key in the trusted keyrings (built-in; secondary and platform
/// where the kernel is built to use them) matches the signer, and `EKEYREJECTED` when a
/// trusted key was found but the signature does not verify with it, i.e. it was made over
/// other bytes than this root hash (or is damaged). dm-verity also gives `ENOKEY` when the
/// `user` key named by `root_hash_sig_key_desc` is not found ("Invalid key specified" in
/// its log). `None` for an errno that is not a signature refusal.
pub fn refusal_reason(errno: i32, kernel_log: &[String]) -> Option<&'static str> {
    Some(match errno {
        libc::ENOKEY if kernel_log.iter().any(|l| l.contains("Invalid key specified")) => {
            "the kernel did not find the key that carried the signature in the keyring"
        }
        libc::ENOKEY => "its signer is not in the kernel's trusted keyrings (the built-in one; the secondary and platform ones where the kernel uses them): the signing certificate, or a CA that issued it, must be trusted by the kernel",
        libc::EKEYREJECTED => "the signature does not cover this root hash: it was made over different data (another root hash) or is damaged, though its signer is known to the kernel",
        libc::EKEYREVOKED => "the key that carried the signature, or the signer's key, was revoked",
        libc::EKEYEXPIRED => "the signer's key has expired",
        libc::EBADMSG => "the signature is not a PKCS#7 message the kernel can parse",
        libc::ENOPKG => "the kernel lacks the crypto algorithm the signature uses",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys can be added, read back by the kernel's `keyctl read` and removed. Runs on
    /// a thread of its own so that its thread keyring is fresh.
    #[test]
    #[cfg_attr(miri, ignore = "needs the kernel (miri models no ioctl or keyctl)")]
    fn add_read_remove() {
        std::thread::spawn(|| {
            let key = match add_user_key("extmerge:test-key", b"payload bytes") {
                Ok(k) => k,
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => {
                    eprintln!("SKIP: no kernel keys ({e})");
                    return;
                }
                Err(e) => panic!("add_key: {e}"),
            };
            assert!(key.serial() > 0);
            let mut buf = [0u8; 64];
            // SAFETY: KEYCTL_READ (11) writes at most `buf.len()` bytes into `buf`.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_keyctl,
                    11 as libc::c_long,
                    libc::c_long::from(key.serial()),
                    buf.as_mut_ptr(),
                    buf.len(),
                )
            };
            assert_eq!(n, 13, "{}", io::Error::last_os_error());
            assert_eq!(&buf[..13], b"payload bytes");
            let serial = key.serial();
            key.remove().unwrap();
            // Revoked: reading fails now.
            // SAFETY: as above.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_keyctl,
                    11 as libc::c_long,
                    libc::c_long::from(serial),
                    buf.as_mut_ptr(),
                    buf.len(),
                )
            };
            assert!(n < 0);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn refuses_bad_arguments() {
        assert!(add_user_key("", b"x").is_err());
        assert!(add_user_key("a\0b", b"x").is_err());
        assert!(add_user_key("d", b"").is_err());
        assert!(add_user_key("d", &vec![0u8; MAX_USER_KEY_PAYLOAD + 1]).is_err());
        assert!(is_signature_refusal(libc::ENOKEY));
        assert!(!is_signature_refusal(libc::EINVAL));
    }

    /// The two refusals dm-verity's signature check gives are told apart: an unknown
    /// signer (ENOKEY) is not a signature over another root hash (EKEYREJECTED, -129).
    #[test]
    fn refusal_reasons() {
        let untrusted = refusal_reason(libc::ENOKEY, &[]).unwrap();
        let other_hash = refusal_reason(libc::EKEYREJECTED, &[]).unwrap();
        assert!(untrusted.contains("not in the kernel's trusted keyrings"));
        assert!(!untrusted.contains("does not cover"));
        assert!(other_hash.contains("does not cover this root hash"));
        assert!(!other_hash.contains("not in the kernel's trusted keyrings"));
        // ENOKEY for a key description the kernel did not find is not an untrusted signer.
        let log = [
            "device-mapper: table: 253:0: verity: DM Verity Sig Verification Invalid key specified"
                .to_string(),
        ];
        let missing = refusal_reason(libc::ENOKEY, &log).unwrap();
        assert!(missing.contains("did not find the key"), "{missing}");
        for e in [
            libc::EKEYREVOKED,
            libc::EKEYEXPIRED,
            libc::EBADMSG,
            libc::ENOPKG,
        ] {
            assert!(refusal_reason(e, &[]).is_some(), "{e}");
        }
        assert_eq!(refusal_reason(libc::EINVAL, &[]), None);
        assert_eq!(refusal_reason(libc::EIO, &log), None);
    }
}
