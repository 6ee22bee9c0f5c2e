//! Activating disk-image extensions: the [`Opener`](crate::inspect::Opener) that turns
//! an image, as [`crate::inspect::image::probe`] found it, into a mounted, read-only
//! directory tree, with dm-verity when the image carries a root hash.
//!
//! For each image, [`ImageOpener`] does what systemd's `dissected_image_mount` does for
//! sysext/confext, with fds and the new mount API, after the inspection (layout, verity
//! metadata, image policy: [`crate::inspect::image`]):
//!
//! 1. The data (and hash) regions get read-only, auto-clearing loop devices; with a
//!    root hash, a dm-verity device named `<root hash>-verity` goes on top (a signature
//!    travels to the kernel in a `user` key, see [`crate::sys::keyring`]; it is never
//!    checked in userspace). The file system type is probed again through the verity
//!    device ([`probe_verified`]), so what is mounted is chosen from verified bytes.
//! 2. The file system is mounted ([`mount::mount_block`]: `fsopen`/`fsmount`, `ro`,
//!    `nodev`, `nosuid`) and attached below the opener's own staging tmpfs under
//!    `/run/extmerge`: Linux 6.1's overlayfs refuses layers on detached mounts. A `/usr`
//!    partition is mounted at `usr/` of an empty directory (systemd's `USR_NO_ROOT`).
//!    Then the dm device is marked for deferred removal and the loop fds are closed, so
//!    loop and dm devices vanish when the last user of the mount (the overlay) goes away.
//!
//! Any failure undoes everything done for that image (mounts, dm device, loop devices,
//! directories) and returns an [`ImageError`] naming the image and the step.
//!
//! # An existing verity device of the same name
//!
//! The dm name derives from the root hash, so a second open of the same content (a
//! `refresh` while the old merge still holds its device, or two images with equal
//! content) finds the name taken. Like systemd, which shares such devices, the existing
//! device is reused, but only after checking that its live table is a single `verity`
//! target over the same number of sectors with the same root hash, and, when the policy
//! asks for a signature, that it was loaded with one (`root_hash_sig_key_desc`); the
//! root hash authenticates every block that device returns. Otherwise the open fails
//! with an error naming the device (`EBUSY`). A reused device is not marked for removal
//! by us (whoever made it decides), and the new loop devices are not needed.

use std::cell::RefCell;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use rustix::fs::{AtFlags, FileType, OFlags};

use crate::fault::{self, Injector};
use crate::format::class::Class;
use crate::format::fs::FsType;
use crate::format::policy::{self, ImagePolicy, Protection};
use crate::format::verity::{self, RootHash};
use crate::inspect::discover::{Image, ImageKind};
use crate::inspect::fsutil::{self, Root};
use crate::inspect::image::{
    apply_policy, probe_in, probe_verified, HashLocation, ImageDirs, ImageError, ImageStep, Probed,
    SigSource, Volume, MAX_SIGNATURE_FILE,
};
use crate::inspect::{DirOpener, Opener};
use crate::log::os_text;
use crate::record::{self, Recorder};
use crate::sys::dm::{Dm, DmFlags, Removal};
use crate::sys::keyring;
use crate::sys::loopdev::{LoopControl, LoopDevice, LoopError, LoopOptions};
use crate::sys::mount::{self, mount_block};
use crate::sys::staging::{mkdir, mkdir_open, StagingArea};
use crate::sys::txn::Txn;

/// Longest dm device name (`DM_NAME_LEN` minus the NUL).
const MAX_DM_NAME: usize = 127;

// A signature the inspection accepts fits into a kernel `user` key.
const _: () = assert!(MAX_SIGNATURE_FILE == keyring::MAX_USER_KEY_PAYLOAD as u64);

/// Registers a loop device this setup attached: detached again on rollback; on commit
/// its fd is given up, and autoclear lets the device live exactly as long as its users.
fn register_loop(txn: &mut Txn, lo: LoopDevice) {
    let cell = Rc::new(RefCell::new(Some(lo)));
    let undo = cell.clone();
    txn.on_undo("loop device", move || {
        // Dropping a LoopDevice detaches it (or sets autoclear while dm still holds it).
        drop(undo.borrow_mut().take());
        Ok::<(), String>(())
    });
    txn.on_commit(move || {
        if let Some(l) = cell.borrow_mut().take() {
            drop(l.keep());
        }
    });
}

/// Registers a dm device this setup created: removed again on rollback; on commit
/// marked for deferred removal, so it lives exactly as long as the mounts using it.
fn register_dm(txn: &mut Txn, name: String) {
    let remove = |name: &str, when: &str| -> Result<(), String> {
        // Deferred: a mount fd closed just now may still hold it for a moment.
        match Dm::open().and_then(|dm| dm.remove(name, true)) {
            Ok(Removal::Deferred) | Ok(Removal::Removed) => Ok(()),
            Err(e) => Err(format!("{when} of dm device {name}: {e}")),
        }
    };
    let n = name.clone();
    txn.on_undo(format!("dm device {name}"), move || remove(&n, "removal"));
    txn.on_commit(move || {
        if let Err(e) = remove(&name, "scheduling the removal") {
            crate::log::warn(&format!("cannot {e}"));
        }
    });
}

/// Registers a directory made in the staging tmpfs (`rel` below `staging`): removed
/// again on rollback.
fn register_dir(txn: &mut Txn, staging: Arc<OwnedFd>, rel: String) {
    txn.on_undo(format!("staging directory {rel}"), move || {
        rustix::fs::unlinkat(&staging, rel.as_str(), AtFlags::REMOVEDIR)
            .map_err(std::io::Error::from)
    });
}

/// The loop devices of one opener: `/dev/loop-control` is opened at the first attach
/// and kept for the others.
#[derive(Debug, Default)]
struct Loops {
    ctl: Option<LoopControl>,
}

impl Loops {
    /// Binds `file[offset..offset + size]` to a free loop device ([`loop_options`]);
    /// `backing` names the file (as people see it) in the device and in errors.
    fn attach(
        &mut self,
        file: std::os::fd::BorrowedFd<'_>,
        offset: u64,
        size: u64,
        backing: &str,
    ) -> Result<LoopDevice, LoopError> {
        let ctl = match &mut self.ctl {
            Some(c) => c,
            slot => slot.insert(LoopControl::open().map_err(|e| LoopError {
                op: "open",
                device: "/dev/loop-control".into(),
                backing: backing.to_string(),
                source: e.into(),
            })?),
        };
        ctl.attach(file, offset, size, loop_options(), backing)
    }
}

fn loop_options() -> LoopOptions {
    LoopOptions {
        read_only: true,
        autoclear: true,
        direct_io: true,
        ..LoopOptions::default()
    }
}

/// The dm name systemd uses for a verity device: `<root hash hex>-verity` (cut to fit
/// `DM_NAME_LEN` for SHA-512 root hashes).
pub fn verity_dm_name(root_hash: &RootHash) -> String {
    let mut hex = root_hash.to_string();
    hex.truncate(MAX_DM_NAME - "-verity".len());
    format!("{hex}-verity")
}

/// Is the live table of `name` one we can use for `root_hash`? If not: step
/// [`ImageStep::Dm`], `EBUSY` (the name is taken by a device we cannot use).
fn check_existing(
    dm: &Dm,
    name: &str,
    root_hash: &RootHash,
    sectors: u64,
    need_sig: bool,
) -> Result<PathBuf, ImageError> {
    let info = dm.dev_status(name).map_err(|e| {
        ImageError::kernel(
            ImageStep::Dm,
            format!("dm device {name} exists: {e}"),
            e.errno(),
        )
    })?;
    let bad = |why: String| {
        ImageError::refused(
            ImageStep::Dm,
            format!(
                "dm device {name} exists already but cannot be reused: {why}; refusing to use it"
            ),
            libc::EBUSY,
        )
    };
    if !info.flags.contains(DmFlags::ACTIVE_PRESENT) || info.flags.contains(DmFlags::SUSPEND) {
        return Err(bad("it has no live table or is suspended".into()));
    }
    let table = dm.table(name).map_err(|e| bad(e.to_string()))?;
    let [t] = table.as_slice() else {
        return Err(bad(format!("{} targets", table.len())));
    };
    let fields: Vec<&str> = t.text.split_ascii_whitespace().collect();
    if t.target_type != "verity" || t.start != 0 || t.length != sectors {
        return Err(bad(format!(
            "its table is {} over {} sectors, not verity over {sectors}",
            t.target_type, t.length
        )));
    }
    if fields.get(8).map(|h| h.to_ascii_lowercase()) != Some(root_hash.to_string()) {
        return Err(bad("its root hash differs".into()));
    }
    if need_sig && !fields.contains(&"root_hash_sig_key_desc") {
        return Err(bad(
            "it was activated without a signature, but the policy requires one".into(),
        ));
    }
    let path = PathBuf::from(format!("/dev/dm-{}", rustix::fs::minor(info.dev)));
    match rustix::fs::stat(&path) {
        Ok(st)
            if FileType::from_raw_mode(st.st_mode) == FileType::BlockDevice
                && st.st_rdev == info.dev =>
        {
            Ok(path)
        }
        _ => Err(bad(format!("{} is not its device node", path.display()))),
    }
}

/// Where the signature of `v` came from, for messages.
fn sig_source_text(v: &Volume) -> String {
    match &v.signature {
        Some((_, SigSource::Sidecar(p))) => p.display().to_string(),
        Some((_, SigSource::SigPartition(i))) => format!("signature partition {i}"),
        None => "nowhere".into(),
    }
}

/// Sets up dm-verity (when `level` asks for it) or a plain loop device for `v`; returns
/// the block device to mount and the file system type to mount it as.
#[allow(clippy::too_many_arguments)]
fn activate(
    root: &Root,
    probed: &Probed,
    v: &Volume,
    level: Protection,
    setup: &mut Txn,
    faults: &mut Injector,
    loops: &mut Loops,
    backing: &str,
) -> Result<(PathBuf, FsType), ImageError> {
    let verity = matches!(level, Protection::Verity | Protection::Signed);
    if !verity && v.hash_tree.is_some() {
        // apply_policy refuses this already; never attach verity-carrying data plainly.
        return Err(ImageError::refused(
            ImageStep::Policy,
            format!(
                "the {} file system has a hash tree: refusing to mount it without verity",
                v.designator
            ),
            libc::ERFKILL,
        ));
    }
    let loop_err = |what: &str, e: crate::sys::loopdev::LoopError| {
        ImageError::kernel(
            ImageStep::Loop,
            format!("loop device for the {} {what}: {e}", v.designator),
            e.errno(),
        )
    };
    if !verity {
        inject(faults, ImageStep::Loop, "loop device")?;
        let lo = loops
            .attach(probed.file.as_fd(), v.offset, v.size, backing)
            .map_err(|e| loop_err("file system", e))?;
        let path = lo.path().to_path_buf();
        register_loop(setup, lo);
        return Ok((path, v.fstype));
    }
    let internal = |m: String| ImageError::invalid(ImageStep::Verity, m, libc::EINVAL);
    let (Some(tree), Some((root_hash, _))) = (&v.hash_tree, &v.root_hash) else {
        return Err(internal(format!(
            "no hash tree or root hash for the {} file system",
            v.designator
        )));
    };
    let Some(sb) = &tree.superblock else {
        return Err(internal("verity superblock not read".into()));
    };
    let sig = match (level, &v.signature) {
        (Protection::Signed, Some((s, _))) => Some(s.as_slice()),
        (Protection::Signed, None) => {
            return Err(ImageError::invalid(
                ImageStep::Signature,
                "no signature to activate with",
                libc::EINVAL,
            ))
        }
        _ => None,
    };
    let bad_sb = |e: verity::VerityError| {
        ImageError::invalid(
            ImageStep::Verity,
            format!("verity superblock: {e}"),
            libc::EBADMSG,
        )
    };
    let sectors = sb.data_sectors().map_err(bad_sb)?;
    let hash_start = sb.hash_start_block(0).map_err(bad_sb)?;
    let dm = Dm::open().map_err(|e| {
        ImageError::kernel(
            ImageStep::Dm,
            format!("dm-verity needs device-mapper, which is not available: {e}"),
            e.errno(),
        )
    })?;
    let name = verity_dm_name(root_hash);
    match dm.dev_status(&name) {
        Ok(_) => {
            let path = check_existing(&dm, &name, root_hash, sectors, sig.is_some())?;
            crate::log::debug(&format!("reusing dm-verity device {name}"));
            let fstype = probe_verified(&path, sb.data_size().unwrap_or(v.size))?;
            return Ok((path, fstype));
        }
        Err(e) if e.errno() == libc::ENXIO => {}
        Err(e) => {
            return Err(ImageError::kernel(
                ImageStep::Dm,
                format!("device-mapper: {e}"),
                e.errno(),
            ))
        }
    }
    inject(faults, ImageStep::Loop, "data loop device")?;
    let data = loops
        .attach(probed.file.as_fd(), v.offset, v.size, backing)
        .map_err(|e| loop_err("data", e))?;
    let data_dev = data.dev();
    register_loop(setup, data);
    let (hoff, hsize) = tree.region();
    let (hash_file, hash_backing) = match &tree.location {
        HashLocation::Partition(_) => (&probed.file, None),
        HashLocation::Sidecar { path, .. } => (
            probed.verity_file.as_ref().unwrap_or(&probed.file),
            Some(root.display_path(path).to_string_lossy().into_owned()),
        ),
    };
    inject(faults, ImageStep::Loop, "hash loop device")?;
    let hash = loops
        .attach(
            hash_file.as_fd(),
            hoff,
            hsize,
            hash_backing.as_deref().unwrap_or(backing),
        )
        .map_err(|e| loop_err("hash tree", e))?;
    let hash_dev = hash.dev();
    register_loop(setup, hash);

    // Counted before the signature key is added, so a failure here has no key to remove.
    inject(faults, ImageStep::Dm, "dm-verity device")?;
    let key = match sig {
        Some(s) => {
            inject(faults, ImageStep::Keyring, "signature key")?;
            let desc = format!("extmerge:{name}");
            Some(keyring::add_user_key(&desc, s).map_err(|e| {
                ImageError::os(
                    ImageStep::Keyring,
                    "adding the root hash signature to the kernel keyring",
                    e,
                )
            })?)
        }
        None => None,
    };
    let params = verity::target_params(
        sb,
        data_dev,
        hash_dev,
        hash_start,
        root_hash,
        key.as_ref().map(|k| k.description()),
    )
    .map_err(|e| {
        ImageError::invalid(
            ImageStep::Verity,
            format!("verity table: {e}"),
            libc::EINVAL,
        )
    })?;
    let created = dm.create_verity(&name, None, &params, sectors);
    if let Some(k) = key {
        if let Err(e) = k.remove() {
            crate::log::warn(&format!("removing the signature key: {}", os_text(&e)));
        }
    }
    let dev = match created {
        Ok(d) => d,
        // The kernel's own errno (EKEYREJECTED, ENOKEY, …), as systemd passes it on; the
        // message says which of them it is (an unknown signer, or a signature over other
        // data), as the kernel's log line ("Root hash verification failed") does not.
        Err(e) if sig.is_some() && keyring::is_signature_refusal(e.errno()) => {
            return Err(ImageError::kernel(
                ImageStep::Signature,
                format!(
                    "the kernel refused the root hash signature from {}: {} ({e})",
                    sig_source_text(v),
                    keyring::refusal_reason(e.errno(), &e.messages).unwrap_or("refused")
                ),
                e.errno(),
            ))
        }
        // dm-verity with require_signatures=1 refuses a table without a signature: ENOKEY.
        Err(e) if sig.is_none() && e.errno() == libc::ENOKEY => {
            return Err(ImageError::kernel(
                ImageStep::Signature,
                format!(
                    "the kernel requires a signed root hash for dm-verity (dm_verity.require_signatures=1) and the image has no signature ({e})"
                ),
                e.errno(),
            ))
        }
        Err(e) if sig.is_some() => {
            return Err(ImageError::kernel(
                ImageStep::Dm,
                format!(
                    "creating dm-verity device {name} with a root hash signature failed: {e} (signature from {})",
                    sig_source_text(v)
                ),
                e.errno(),
            ))
        }
        Err(e) => {
            return Err(ImageError::kernel(
                ImageStep::Dm,
                format!("creating dm-verity device {name}: {e}"),
                e.errno(),
            ))
        }
    };
    register_dm(setup, dev.name.clone());
    let fstype = probe_verified(&dev.path, sb.data_size().unwrap_or(v.size))?;
    Ok((dev.path, fstype))
}

/// Counts an image setup step; fails the one a test asked for ([`fault::IMAGE_FAIL_ENV`]).
fn inject(faults: &mut Injector, step: ImageStep, what: &str) -> Result<(), ImageError> {
    faults
        .step()
        .map_err(|n| ImageError::injected(step, n, what))
}

// ---------------------------------------------------------------------------------------
// The opener

/// Opens directory and disk-image extensions (see the module docs). Mounts made for
/// images live below the opener's staging tmpfs until the opener is dropped; overlays
/// built from them keep private clones, so dropping the opener after a merge is right.
#[derive(Debug)]
pub struct ImageOpener {
    class: Class,
    policy: Option<ImagePolicy>,
    in_initrd_no_root: bool,
    arch: &'static str,
    staging: Option<StagingArea>,
    seq: u32,
    faults: Injector,
    /// The directories of the images opened so far (their sidecars' lookups).
    dirs: ImageDirs,
    loops: Loops,
    recorder: Option<Recorder>,
}

impl ImageOpener {
    /// An opener for `class`. `policy_override` is `--image-policy=` (it replaces the
    /// per-image choice); `in_initrd_no_root` enables the strict policies for images
    /// under `/.extra/` (running in the initrd without `--root`).
    pub fn new(
        class: Class,
        policy_override: Option<ImagePolicy>,
        in_initrd_no_root: bool,
    ) -> ImageOpener {
        ImageOpener {
            class,
            policy: policy_override,
            in_initrd_no_root,
            arch: crate::format::arch::native(),
            staging: None,
            seq: 0,
            faults: fault::FaultSettings::from_process().image(),
            dirs: ImageDirs::new(),
            loops: Loops::default(),
            recorder: None,
        }
    }

    /// Notes each image's protection and the time of its device setup and mounts there.
    pub fn set_recorder(&mut self, recorder: Option<Recorder>) {
        self.recorder = recorder;
    }

    /// Replaces the fault injector (from [`fault::FaultSettings::from_process`] in [`new`](Self::new)):
    /// tests use it to fail one setup step in-process.
    pub fn set_faults(&mut self, faults: Injector) {
        self.faults = faults;
    }

    /// The image policy that applies to `image`.
    pub fn policy_for(&self, image: &Image) -> ImagePolicy {
        // The initrd's own `/.extra` images on the real root: the strict `/.extra` policy
        // by their path, whatever the real root's configuration says (it is written for
        // the root's own images, not for what an ESP brings).
        let extra = image.base.is_some();
        policy::pick_for_image(
            self.class == Class::Sysext,
            &image.path.to_string_lossy(),
            self.in_initrd_no_root || extra,
            self.policy.as_ref().filter(|_| !extra),
        )
    }

    /// The staging directory's host path, once something was mounted.
    pub fn staging_path(&self) -> Option<PathBuf> {
        self.staging.as_ref().map(StagingArea::path)
    }

    /// Opens `image` (inside `root`): a directory is opened as it is, a disk image is
    /// inspected, checked against the image policy, activated and mounted. Returns the
    /// mounted tree's root (`None` is never returned today; the [`Opener`] contract
    /// allows it). An error names the image (as shown below the root) and the step.
    pub fn open_image(
        &mut self,
        root: &Root,
        image: &Image,
    ) -> Result<Option<OwnedFd>, ImageError> {
        let root = image.root_in(root);
        if image.kind == ImageKind::Directory {
            // As [`DirOpener`]: opened by discovery, or by its name inside the root.
            if let Some(fd) = image.opened.take() {
                return Ok(Some(fd));
            }
            return root
                .open_at(&image.path, OFlags::RDONLY | OFlags::DIRECTORY)
                .map(Some)
                .map_err(|e| {
                    ImageError::os(ImageStep::Open, "cannot open", e)
                        .at(root.display_path(&image.path))
                });
        }
        self.open_disk_image(root, image)
            .map(Some)
            .map_err(|e| e.at(root.display_path(&image.path)))
    }

    fn open_disk_image(&mut self, root: &Root, image: &Image) -> Result<OwnedFd, ImageError> {
        let probed = probe_in(root, image, self.arch, &mut self.dirs)?;
        let policy = self.policy_for(image);
        let levels = apply_policy(&policy, &probed.info)?;
        if crate::log::enabled(crate::log::Level::Debug) {
            crate::log::debug(&format!(
                "{}: {:?}, protection used: {levels:?}",
                image.path.display(),
                probed.info.layout
            ));
        }
        // The image as people see it: the loop device's `lo_file_name`, and errors.
        let backing = root
            .display_path(&image.path)
            .to_string_lossy()
            .into_owned();

        // One transaction for this image: undone on any error (by its drop), committed
        // once the image is mounted in the staging area. The fds its undo steps need are
        // shared with them (`Arc`), not duplicated.
        let mut setup = Txn::new(Injector::default());
        let mut mounts = Vec::new();
        let (mut setup_usec, mut mount_usec) = (0, 0);
        let mut weakest = None;
        for (v, level) in probed.info.volumes.iter().zip(&levels) {
            if *level == Protection::Unused {
                continue;
            }
            weakest = Some(weakest.map_or(*level, |w: Protection| w.min(*level)));
            let t = record::start(self.recorder.as_ref());
            let (dev, fstype) = activate(
                root,
                &probed,
                v,
                *level,
                &mut setup,
                &mut self.faults,
                &mut self.loops,
                &backing,
            )
            .map_err(|e| e.context(format_args!("{} ({})", v.designator, step_name(*level))))?;
            let t = t.map(|t| {
                setup_usec += record::usec_since(t);
                Instant::now()
            });
            inject(&mut self.faults, ImageStep::Mount, "mount")?;
            let mnt = Arc::new(mount_block(&dev, fstype).map_err(|e| {
                ImageError::kernel(
                    ImageStep::Mount,
                    format!("mounting the {} file system: {e}", v.designator),
                    e.errno(),
                )
            })?);
            if let Some(t) = t {
                mount_usec += record::usec_since(t);
            }
            let what = format!("{} of {}", v.designator, image.path.display());
            // Held until the transaction ends: a rollback closes it (the detached mount
            // goes), after the attach below is undone.
            let held = mnt.clone();
            setup.on_undo(what.clone(), move || {
                drop(held);
                Ok::<(), String>(())
            });
            mounts.push((v.mount_point, mnt, what));
        }

        let staging_err = |e: std::io::Error, what: String| {
            ImageError::os(ImageStep::Staging, format_args!("staging{what}"), e)
        };
        if self.staging.is_none() {
            inject(&mut self.faults, ImageStep::Staging, "staging tmpfs")?;
            self.staging = Some(
                StagingArea::create(
                    &format!("{}-images", self.class.as_str()),
                    self.class.mount_source(),
                )
                .map_err(|e| {
                    ImageError::kernel(ImageStep::Staging, format!("staging: {e}"), e.errno())
                })?,
            );
        }
        let staging = self.staging.as_ref().expect("created above");
        let stage_fd = staging.fd();
        let k = self.seq.to_string();
        self.seq += 1;
        inject(&mut self.faults, ImageStep::Staging, "staging directory")?;
        // The root file system goes onto the directory itself, whose own mode it then
        // hides: made, not opened. A `/usr` partition alone goes below it (`usr/`), so
        // the directory is the tree's top and gets its mode exactly.
        let covered = mounts.first().is_some_and(|(point, _, _)| point.is_empty());
        let top = if covered {
            mkdir(stage_fd, &k, 0o755).map(|()| None)
        } else {
            mkdir_open(stage_fd, &k, 0o755).map(Some)
        }
        .map_err(|e| staging_err(e, format!(": {}/{k}", staging.path().display())))?;
        register_dir(&mut setup, staging.shared_fd(), k.clone());
        let mut attached_top = None;
        for (point, mnt, what) in &mounts {
            let target_path = staging.path().join(&k).join(point);
            let shown = target_path.display().to_string();
            if point.is_empty() {
                inject(&mut self.faults, ImageStep::Mount, "attach")?;
                mount::attach_at(mnt.as_fd(), stage_fd, &k, &shown)
            } else {
                let target = match (attached_top.is_some(), &top) {
                    // A directory of the root file system mounted just before.
                    (true, _) | (false, None) => fsutil::open_in(
                        stage_fd,
                        &Path::new(&k).join(point),
                        OFlags::RDONLY | OFlags::DIRECTORY,
                        rustix::fs::ResolveFlags::NO_SYMLINKS,
                    )
                    .map_err(|e| {
                        ImageError::os(
                            ImageStep::Mount,
                            format_args!("the root file system has no directory /{point} to mount the {point} partition on"),
                            e,
                        )
                    })?,
                    (false, Some(top)) => {
                        let d = mkdir_open(top.as_fd(), point, 0o755)
                            .map_err(|e| staging_err(e, format!(": {shown}")))?;
                        register_dir(&mut setup, staging.shared_fd(), format!("{k}/{point}"));
                        d
                    }
                };
                inject(&mut self.faults, ImageStep::Mount, "attach")?;
                mount::attach(mnt.as_fd(), target.as_fd(), false, &shown)
            }
            .map_err(|e| {
                ImageError::kernel(
                    ImageStep::Mount,
                    format!("attaching the mount: {e}"),
                    e.errno(),
                )
            })?;
            let attached = mnt.clone();
            let what = what.clone();
            setup.on_undo(format!("attach of {what}"), move || {
                mount::detach(attached.as_fd(), &what)
            });
            if point.is_empty() {
                attached_top = Some(mnt.clone());
            }
        }
        drop(mounts);
        let fd = match (attached_top, top) {
            // The mounted root file system's root, through the mount itself (the
            // staging directory `k` is below it).
            (Some(mnt), _) => rustix::fs::openat(
                &*mnt,
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .map_err(|e| ImageError::os(ImageStep::Mount, "opening the mounted image", e))?,
            // The staging directory with the `/usr` partition below it.
            (None, Some(top)) => top,
            (None, None) => fsutil::open_in(
                stage_fd,
                Path::new(&k),
                OFlags::RDONLY | OFlags::DIRECTORY,
                rustix::fs::ResolveFlags::NO_SYMLINKS,
            )
            .map_err(|e| ImageError::os(ImageStep::Mount, "opening the mounted image", e))?,
        };
        setup.commit();
        if let Some(r) = &self.recorder {
            r.entry(self.class, &image.name, |e| {
                e.protection = weakest.map(|w| match w {
                    Protection::Signed => record::Protection::Signed,
                    Protection::Verity => record::Protection::Verity,
                    _ => record::Protection::None,
                });
                e.setup_usec = Some(setup_usec);
                e.mount_usec = Some(mount_usec);
            });
        }
        Ok(fd)
    }
}

fn step_name(level: Protection) -> &'static str {
    match level {
        Protection::Signed => "dm-verity with signature",
        Protection::Verity => "dm-verity",
        _ => "loop device",
    }
}

impl Opener for ImageOpener {
    fn open(&mut self, root: &Root, image: &Image) -> Result<Option<OwnedFd>, ImageError> {
        if image.kind == ImageKind::Directory {
            return DirOpener.open(root, image);
        }
        self.open_image(root, image)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dm_names_fit() {
        let h = RootHash::from_bytes(&[0xab; 32]).unwrap();
        assert_eq!(verity_dm_name(&h), format!("{}-verity", "ab".repeat(32)));
        let h = RootHash::from_bytes(&[0xcd; 64]).unwrap();
        let n = verity_dm_name(&h);
        assert_eq!(n.len(), MAX_DM_NAME);
        assert!(n.ends_with("-verity"));
    }
}
