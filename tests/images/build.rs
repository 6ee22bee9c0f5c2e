//! Test images, built at run time with the usual tools (no blobs in the repository):
//! `mkfs.erofs`, `mksquashfs`, `mkfs.ext4 -d`, `veritysetup format` (userspace only),
//! `sfdisk` (GPT disk images laid out as `systemd-repart` does), `openssl` (a
//! self-signed certificate and a PKCS#7 signature of the root hash, as systemd-repart
//! makes it).
//!
//! Every image set is a *fixture*: a few files with a common stem (`bare-verity.raw`,
//! `bare-verity.roothash`, …). [`fixture`] builds it into a directory, or, when
//! `EXTMERGE_FIXTURES` names a directory of prebuilt fixtures (the VM has none of the
//! tools; `tests/vm/run-image-tests.sh` builds them on the host with the ignored test
//! `build_fixtures`), copies it from there.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use extmerge::format::gpt::{self, Role};

/// Environment variable naming a directory of prebuilt fixtures (`<dir>/<fixture>/…`).
pub const FIXTURES_ENV: &str = "EXTMERGE_FIXTURES";

/// All fixtures, for `build_fixtures`.
pub const ALL: &[&str] = &[
    "erofs",
    "squashfs",
    "ext4",
    "confext",
    "ddi",
    "ddi-root",
    "ddi-two-usr",
    "ddi-verity",
    "ddi-verity-nosig",
    "ddi-verity-zeroed",
    "ddi-verity-garbage",
    "ddi-verity-badtree",
    "ddi-verity-sha512",
    "bare-verity",
    "verity-sidecars",
];

/// The line every test image's `blob.bin` is made of; the corruption test flips a byte
/// in one of them, far from the start of the file system.
pub const BLOB_LINE: &str = "VERITY-BLOCK-XX\n";

/// Writes `content` to `path`, creating parents.
pub fn write(path: &Path, content: &[u8]) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
    }
    fs::write(path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Runs a command; `Err` with its output when it fails or cannot start.
pub fn run(cmd: &mut Command) -> Result<String, String> {
    let shown = format!("{cmd:?}");
    let o = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{shown}: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "{shown}: {}\n{}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Is `tool` on `PATH` (or in /usr/sbin, /sbin)?
pub fn have(tool: &str) -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .any(|d| Path::new(d).join(tool).exists());
    found
}

/// The tree of a sysext named `name`: release file, `usr/share/<name>/hello.txt` and a
/// 256 KiB `usr/share/<name>/blob.bin`.
pub fn sysext_tree(dir: &Path, name: &str) {
    write(
        &dir.join(format!(
            "usr/lib/extension-release.d/extension-release.{name}"
        )),
        b"ID=_any\n",
    );
    write(
        &dir.join(format!("usr/share/{name}/hello.txt")),
        format!("hello from {name}\n").as_bytes(),
    );
    write(
        &dir.join(format!("usr/share/{name}/blob.bin")),
        BLOB_LINE.repeat(16384).as_bytes(),
    );
}

/// The same tree as the contents of a `/usr` partition (without the `usr/` prefix).
pub fn usr_tree(dir: &Path, name: &str) {
    let tmp = dir.with_extension("full");
    sysext_tree(&tmp, name);
    fs::rename(tmp.join("usr"), dir).unwrap();
    fs::remove_dir_all(&tmp).unwrap();
}

/// A confext tree: release file and `etc/<name>.conf`.
pub fn confext_tree(dir: &Path, name: &str) {
    write(
        &dir.join(format!("etc/extension-release.d/extension-release.{name}")),
        b"ID=debian\nVERSION_ID=12\n",
    );
    write(
        &dir.join(format!("etc/{name}.conf")),
        format!("conf from {name}\n").as_bytes(),
    );
}

/// `mkfs.erofs` of `src` into `out` (4 KiB blocks, reproducible).
pub fn mkfs_erofs(src: &Path, out: &Path) -> Result<(), String> {
    run(Command::new("mkfs.erofs")
        .args(["--quiet", "-T0", "--all-root"])
        .arg(out)
        .arg(src))
    .map(drop)
}

/// `mksquashfs` of `src` into `out`.
pub fn mksquashfs(src: &Path, out: &Path) -> Result<(), String> {
    run(Command::new("mksquashfs").arg(src).arg(out).args([
        "-quiet",
        "-noappend",
        "-all-root",
        "-no-progress",
    ]))
    .map(drop)
}

/// `mkfs.ext4 -d` of `src` into an 8 MiB `out` (with a journal).
pub fn mkfs_ext4(src: &Path, out: &Path) -> Result<(), String> {
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-E", "root_owner=0:0", "-d"])
        .arg(src)
        .arg(out)
        .arg("8M"))
    .map(drop)
}

/// `veritysetup format data hash`: returns the root hash (hex).
pub fn verity_format(data: &Path, hash: &Path) -> Result<String, String> {
    verity_format_with(data, hash, &[])
}

/// `veritysetup format [args] data hash`: returns the root hash (hex).
pub fn verity_format_with(data: &Path, hash: &Path, args: &[&str]) -> Result<String, String> {
    let out = run(Command::new("veritysetup")
        .arg("format")
        .args(args)
        .arg(data)
        .arg(hash))?;
    out.lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .map(|h| h.trim().to_string())
        .ok_or_else(|| format!("no root hash in veritysetup output:\n{out}"))
}

/// A self-signed test certificate and key in `dir` (`cert.pem`, `key.pem`).
pub fn make_cert(dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if !cert.exists() {
        run(Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
            ])
            .args(["-subj", "/CN=extmerge test verity key", "-batch", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert))?;
    }
    Ok((cert, key))
}

/// A detached PKCS#7 signature (DER) of `root_hash_hex` (as text, no newline), made as
/// systemd-repart makes it (`openssl smime -sign -binary -outform der -noattr`).
pub fn sign(root_hash_hex: &str, dir: &Path) -> Result<Vec<u8>, String> {
    let (cert, key) = make_cert(dir)?;
    let input = dir.join("roothash.txt");
    let out = dir.join("roothash.p7s");
    fs::write(&input, root_hash_hex).map_err(|e| e.to_string())?;
    run(Command::new("openssl")
        .args([
            "smime", "-sign", "-binary", "-noattr", "-outform", "der", "-in",
        ])
        .arg(&input)
        .arg("-signer")
        .arg(&cert)
        .arg("-inkey")
        .arg(&key)
        .arg("-out")
        .arg(&out))?;
    fs::read(&out).map_err(|e| e.to_string())
}

/// `n` deterministic pseudo-random bytes (xorshift64 from `seed`).
pub fn junk(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// The JSON of a `*-verity-sig` partition (NUL-padded to 16 KiB by [`gpt_image`]).
pub fn verity_sig_json(root_hash_hex: &str, sig: &[u8]) -> Vec<u8> {
    format!(
        "{{\"rootHash\":\"{root_hash_hex}\",\"signature\":\"{}\"}}\n",
        base64(sig)
    )
    .into_bytes()
}

/// A UUID text from 16 bytes in printed order.
pub fn uuid_text(b: &[u8]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Hex digits to bytes.
pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// One partition of a test disk image.
pub struct Part {
    /// Role (type GUID for the native architecture).
    pub role: Role,
    /// Contents (the partition is this long, rounded up to 4 KiB, at least 16 KiB).
    pub data: Vec<u8>,
    /// Partition UUID, or random.
    pub uuid: Option<String>,
}

/// Partition label systemd-repart gives a role: `usr-x86-64`, `usr-x86-64-verity`, …
pub fn repart_label(role: Role) -> String {
    let arch = extmerge::format::arch::native();
    match role {
        Role::Root => format!("root-{arch}"),
        Role::RootVerity => format!("root-{arch}-verity"),
        Role::RootVeritySig => format!("root-{arch}-verity-sig"),
        Role::Usr => format!("usr-{arch}"),
        Role::UsrVerity => format!("usr-{arch}-verity"),
        Role::UsrVeritySig => format!("usr-{arch}-verity-sig"),
        r => r.name().to_string(),
    }
}

/// A GPT disk image at `out` with `parts` (1 MiB aligned, in order), written with
/// `sfdisk` and filled in place. Returns the partitions' (offset, size) in bytes.
pub fn gpt_image(out: &Path, parts: &[Part]) -> Result<Vec<(u64, u64)>, String> {
    const MIB: u64 = 1 << 20;
    let arch = extmerge::format::arch::native();
    let mut script = String::from("label: gpt\nunit: sectors\nfirst-lba: 2048\n");
    let mut layout = Vec::new();
    let mut next = MIB;
    for p in parts {
        let size = (p.data.len() as u64).max(16 * 1024).div_ceil(4096) * 4096;
        let guid = gpt::type_guid_for(p.role, arch)
            .ok_or_else(|| format!("no type GUID for {} on {arch}", p.role))?;
        script += &format!(
            "start={}, size={}, type={guid}, name=\"{}\"{}\n",
            next / 512,
            size / 512,
            repart_label(p.role),
            p.uuid
                .as_ref()
                .map(|u| format!(", uuid={u}"))
                .unwrap_or_default()
        );
        layout.push((next, size));
        next = (next + size).div_ceil(MIB) * MIB;
    }
    let total = next + MIB;
    let f = fs::File::create(out).map_err(|e| e.to_string())?;
    f.set_len(total).map_err(|e| e.to_string())?;
    drop(f);
    let mut child = Command::new("sfdisk")
        .args(["--no-reread", "--no-tell-kernel", "-q", "--wipe", "always"])
        .arg(out)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("sfdisk: {e}"))?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .map_err(|e| e.to_string())?;
    let o = child.wait_with_output().map_err(|e| e.to_string())?;
    if !o.status.success() {
        return Err(format!(
            "sfdisk failed: {}\n{}\nscript:\n{script}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    let f = fs::OpenOptions::new()
        .write(true)
        .open(out)
        .map_err(|e| e.to_string())?;
    for (p, (off, _)) in parts.iter().zip(&layout) {
        f.write_all_at(&p.data, *off).map_err(|e| e.to_string())?;
    }
    Ok(layout)
}

fn read(p: &Path) -> Result<Vec<u8>, String> {
    fs::read(p).map_err(|e| format!("{}: {e}", p.display()))
}

fn need(tools: &[&str]) -> Result<(), String> {
    for t in tools {
        if !have(t) {
            return Err(format!("SKIP: {t} missing"));
        }
    }
    Ok(())
}

/// Builds fixture `name` into `dir` (which must exist). Errors starting with `SKIP:`
/// mean a tool is missing.
pub fn build(name: &str, dir: &Path) -> Result<(), String> {
    let work = dir.join(format!(".work-{name}"));
    fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let r = build_in(name, dir, &work);
    let _ = fs::remove_dir_all(&work);
    r
}

fn build_in(name: &str, dir: &Path, work: &Path) -> Result<(), String> {
    let tree = work.join("tree");
    match name {
        "erofs" => {
            need(&["mkfs.erofs"])?;
            sysext_tree(&tree, "erofs-ext");
            mkfs_erofs(&tree, &dir.join("erofs-ext.raw"))
        }
        "squashfs" => {
            need(&["mksquashfs"])?;
            sysext_tree(&tree, "squash-ext");
            mksquashfs(&tree, &dir.join("squash-ext.raw"))
        }
        "ext4" => {
            need(&["mkfs.ext4"])?;
            sysext_tree(&tree, "ext4-ext");
            mkfs_ext4(&tree, &dir.join("ext4-ext.raw"))
        }
        "confext" => {
            need(&["mkfs.erofs"])?;
            confext_tree(&tree, "conf-ext");
            mkfs_erofs(&tree, &dir.join("conf-ext.raw"))
        }
        "ddi" | "ddi-two-usr" => {
            need(&["mkfs.erofs", "sfdisk"])?;
            let ext = if name == "ddi" { "ddi-ext" } else { "two-usr" };
            usr_tree(&tree, ext);
            let fs_img = work.join("usr.erofs");
            mkfs_erofs(&tree, &fs_img)?;
            let data = read(&fs_img)?;
            let mut parts = vec![Part {
                role: Role::Usr,
                data: data.clone(),
                uuid: None,
            }];
            if name == "ddi-two-usr" {
                parts.push(Part {
                    role: Role::Usr,
                    data,
                    uuid: None,
                });
            }
            gpt_image(&dir.join(format!("{ext}.raw")), &parts).map(drop)
        }
        "ddi-root" => {
            need(&["mkfs.erofs", "sfdisk"])?;
            sysext_tree(&tree, "ddi-root");
            let fs_img = work.join("root.erofs");
            mkfs_erofs(&tree, &fs_img)?;
            gpt_image(
                &dir.join("ddi-root.raw"),
                &[Part {
                    role: Role::Root,
                    data: read(&fs_img)?,
                    uuid: None,
                }],
            )
            .map(drop)
        }
        "ddi-verity" | "ddi-verity-nosig" => {
            need(&["mkfs.erofs", "sfdisk", "veritysetup", "openssl"])?;
            usr_tree(&tree, name);
            let fs_img = work.join("usr.erofs");
            let hash_img = work.join("usr.verity");
            mkfs_erofs(&tree, &fs_img)?;
            let rh = verity_format(&fs_img, &hash_img)?;
            let rhb = unhex(&rh);
            // systemd-repart: data partition UUID = first 128 bits of the root hash,
            // verity partition UUID = last 128 bits.
            let mut parts = vec![
                Part {
                    role: Role::Usr,
                    data: read(&fs_img)?,
                    uuid: Some(uuid_text(&rhb[..16])),
                },
                Part {
                    role: Role::UsrVerity,
                    data: read(&hash_img)?,
                    uuid: Some(uuid_text(&rhb[rhb.len() - 16..])),
                },
            ];
            if name == "ddi-verity" {
                let sig = sign(&rh, work)?;
                let mut json = verity_sig_json(&rh, &sig);
                json.resize(16 * 1024, 0);
                parts.push(Part {
                    role: Role::UsrVeritySig,
                    data: json,
                    uuid: None,
                });
            }
            write(&dir.join(format!("{name}.roothash.txt")), rh.as_bytes());
            gpt_image(&dir.join(format!("{name}.raw")), &parts).map(drop)
        }
        // usr + usr-verity as systemd-repart lays them out (root hash = the partition
        // UUIDs), no signature partition, with the verity partition damaged: its
        // superblock zeroed; all of it garbage; a hash block of the tree changed (the
        // superblock intact); or formatted with SHA-512, whose 64-byte root hash the
        // 128-bit UUIDs cannot hold (they carry its first and last 16 bytes).
        "ddi-verity-zeroed" | "ddi-verity-garbage" | "ddi-verity-badtree" | "ddi-verity-sha512" => {
            need(&["mkfs.erofs", "sfdisk", "veritysetup"])?;
            usr_tree(&tree, name);
            let fs_img = work.join("usr.erofs");
            let hash_img = work.join("usr.verity");
            mkfs_erofs(&tree, &fs_img)?;
            let rh = if name == "ddi-verity-sha512" {
                verity_format_with(&fs_img, &hash_img, &["--hash", "sha512"])?
            } else {
                verity_format(&fs_img, &hash_img)?
            };
            let rhb = unhex(&rh);
            let mut hash = read(&hash_img)?;
            match name {
                "ddi-verity-zeroed" => hash[..4096].fill(0),
                "ddi-verity-garbage" => hash = junk(hash.len(), 0x5eed_0f7e),
                "ddi-verity-badtree" => {
                    // Block 1 is the top (here the only) level of the tree: every read
                    // of the data is checked against it.
                    if hash.len() < 2 * 4096 {
                        return Err(format!("hash tree of {} bytes: no hash block", hash.len()));
                    }
                    for b in &mut hash[4096..4096 + 64] {
                        *b ^= 0xff;
                    }
                }
                _ => {}
            }
            write(&dir.join(format!("{name}.roothash.txt")), rh.as_bytes());
            gpt_image(
                &dir.join(format!("{name}.raw")),
                &[
                    Part {
                        role: Role::Usr,
                        data: read(&fs_img)?,
                        uuid: Some(uuid_text(&rhb[..16])),
                    },
                    Part {
                        role: Role::UsrVerity,
                        data: hash,
                        uuid: Some(uuid_text(&rhb[rhb.len() - 16..])),
                    },
                ],
            )
            .map(drop)
        }
        // Broken sidecar contents, installed by the tests beside a `bare-verity` image
        // under the names that matter (empty files, directories and symlinks are made
        // there): a root hash of the wrong length for its SHA-256 hash tree, a root hash
        // that is binary junk, a hash tree that is junk, a signature that is junk and a
        // real PKCS#7 signature cut short.
        "verity-sidecars" => {
            need(&["openssl"])?;
            write(
                &dir.join("wrong-length.roothash"),
                format!("{}\n", "ab".repeat(20)).as_bytes(),
            );
            write(&dir.join("junk.roothash"), &junk(96, 1));
            write(&dir.join("junk.verity"), &junk(64 * 1024, 2));
            write(&dir.join("junk.p7s"), &junk(700, 3));
            let sig = sign(&"cd".repeat(32), work)?;
            write(&dir.join("truncated.p7s"), &sig[..sig.len() / 2]);
            Ok(())
        }
        "bare-verity" => {
            need(&["mkfs.erofs", "veritysetup", "openssl"])?;
            sysext_tree(&tree, "bare-verity");
            let img = dir.join("bare-verity.raw");
            mkfs_erofs(&tree, &img)?;
            let rh = verity_format(&img, &dir.join("bare-verity.verity"))?;
            write(
                &dir.join("bare-verity.roothash"),
                format!("{rh}\n").as_bytes(),
            );
            // Not at its sidecar name: the tests that want a signature put it there.
            let sig = sign(&rh, work)?;
            write(&dir.join("bare-verity.p7s.sample"), &sig);
            Ok(())
        }
        _ => Err(format!("no fixture named {name}")),
    }
}

/// Puts fixture `name` into `dir`: copied from `$EXTMERGE_FIXTURES/<name>/` when that
/// is set, else built now. Errors starting with `SKIP:` mean it cannot be had here.
pub fn fixture(name: &str, dir: &Path) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    if let Some(pre) = std::env::var_os(FIXTURES_ENV) {
        let src = Path::new(&pre).join(name);
        let rd =
            fs::read_dir(&src).map_err(|e| format!("prebuilt fixture {}: {e}", src.display()))?;
        for e in rd {
            let e = e.map_err(|e| e.to_string())?;
            fs::copy(e.path(), dir.join(e.file_name())).map_err(|e| e.to_string())?;
        }
        return Ok(());
    }
    build(name, dir)
}
