#!/usr/bin/env bash
# Builds (or reuses) a small test kernel whose built-in trusted keyring holds a test CA,
# so that the VM tests can check the *accepting* side of dm-verity root-hash signatures
# (Debian's kernel trusts only Debian's keys: with it a signed image can only be refused).
# It also boots the boot tests' dracut and mkosi-style initrds (systemd and udev in the
# initrd) when they carry a CA-signed extension in /.extra (tests/boot, flow 9).
#
#   tests/vm/signed-kernel.sh [-j N]     prints the kernel's path on stdout (last line)
#
# Everything lands in target/signed-kernel/ (or $SIGNED_KERNEL_DIR):
#   keys/ca.pem, ca.key               the test CA, built into .builtin_trusted_keys
#   keys/leaf.pem, leaf.key, leaf.der a signing certificate issued by the CA, for the
#                                     secondary keyring (added at run time in the guest)
#   keys/untrusted.pem, untrusted.key a self-signed key the kernel does not trust
#   bzImage, config, stamp            the kernel, its .config, what it was built from
#   src/                              the unpacked source and the build tree (when the
#                                     path has a space or colon, which the kernel's
#                                     Makefile refuses: a /var/tmp directory, removed
#                                     after the build)
# The keys are made with openssl when absent and kept afterwards. FOR TESTS ONLY: the
# private keys are unprotected; never trust ca.pem outside a throw-away VM.
#
# The kernel: Debian's linux-source-6.1 (apt-installed by tests/deps.sh), `tinyconfig`
# plus the options in Y below, everything built in (no modules, no debug info), with
# reproducible build metadata. The stamp is a sha256 over this script (the option list is
# in it), the CA certificate and the linux-source package version: a bzImage whose stamp
# matches is reused as it is, anything else is rebuilt with -j$(nproc): 19 min of CPU time
# (user + system), about 10 min on 2 idle cores (25 min measured on 2 cores shared with
# other jobs); a rebuild over an existing tree is incremental.
#
# Exit status: 0 and the path; 77 a prerequisite (package) is missing; 1 the build failed.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
dir=${SIGNED_KERNEL_DIR:-$ROOT/target/signed-kernel}
jobs=$(nproc)
while (($#)); do
    case $1 in
        -j) jobs=${2:?}; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "signed-kernel: unknown argument $1" >&2; exit 2 ;;
    esac
done
say() { echo "signed-kernel: $*" >&2; }

# =y options on top of tinyconfig, grouped by purpose.
Y=(
    # base: 64-bit, SMP, console, the system calls busybox, glibc and Rust programs use
    64BIT SMP PRINTK PRINTK_TIME BUG MULTIUSER SYSVIPC FUTEX EPOLL SIGNALFD TIMERFD
    EVENTFD SHMEM AIO ADVISE_SYSCALLS MEMBARRIER RSEQ FHANDLE POSIX_TIMERS
    FILE_LOCKING INOTIFY_USER KALLSYMS IKCONFIG IKCONFIG_PROC
    BINFMT_ELF BINFMT_SCRIPT NAMESPACES UTS_NS IPC_NS PID_NS USER_NS NET_NS NET UNIX
    SLUB CC_OPTIMIZE_FOR_PERFORMANCE KERNEL_GZIP
    # boot: the runner's initramfs; ACPI for the power-off that ends qemu
    BLK_DEV_INITRD RD_GZIP ACPI
    # devices: serial console, virtio-blk on PCI, loop
    TTY UNIX98_PTYS SERIAL_8250 SERIAL_8250_CONSOLE PCI PCI_MSI
    VIRTIO_MENU VIRTIO_PCI VIRTIO_PCI_LEGACY BLOCK BLK_DEV VIRTIO_BLK BLK_DEV_LOOP
    # file systems (erofs, squashfs and ext4 images; overlayfs for the merge)
    PROC_FS PROC_SYSCTL SYSFS DEVTMPFS DEVTMPFS_MOUNT TMPFS TMPFS_XATTR TMPFS_POSIX_ACL
    EXT4_FS EXT4_FS_POSIX_ACL OVERLAY_FS MISC_FILESYSTEMS
    EROFS_FS EROFS_FS_XATTR EROFS_FS_POSIX_ACL EROFS_FS_ZIP
    SQUASHFS SQUASHFS_XATTR SQUASHFS_ZLIB SQUASHFS_XZ SQUASHFS_ZSTD
    # device mapper, dm-verity with root-hash signatures (built-in and secondary keyrings)
    MD BLK_DEV_DM DM_VERITY DM_VERITY_FEC DM_VERITY_VERIFY_ROOTHASH_SIG
    DM_VERITY_VERIFY_ROOTHASH_SIG_SECONDARY_KEYRING
    # keys, X.509, PKCS#7 and the trusted keyrings
    KEYS CRYPTO ASYMMETRIC_KEY_TYPE ASYMMETRIC_PUBLIC_KEY_SUBTYPE X509_CERTIFICATE_PARSER
    PKCS7_MESSAGE_PARSER SYSTEM_DATA_VERIFICATION SYSTEM_TRUSTED_KEYRING
    SECONDARY_TRUSTED_KEYRING CRYPTO_RSA CRYPTO_SHA1 CRYPTO_SHA256 CRYPTO_SHA512
    # systemd and udev in a dracut or mkosi initrd (the boot tests): systemd's README list
    CGROUPS AUTOFS_FS DMI DMIID RD_ZSTD CRYPTO_USER_API_HASH CRYPTO_HMAC POSIX_MQUEUE
)
N=(MODULES KERNEL_XZ SLOB CC_OPTIMIZE_FOR_SIZE LOCALVERSION_AUTO VT DEBUG_INFO)

# ------------------------------------------------------------------ prerequisites
missing=()
for t in openssl make gcc flex bison bc xz; do
    command -v "$t" >/dev/null || missing+=("$t")
done
[[ -f /usr/include/libelf.h ]] || missing+=(libelf-dev)
[[ -f /usr/include/openssl/evp.h ]] || missing+=(libssl-dev)
tarball=/usr/src/linux-source-6.1.tar.xz
[[ -r $tarball ]] || missing+=("$tarball (linux-source-6.1)")
if ((${#missing[@]})); then
    say "missing: ${missing[*]} (install them with tests/deps.sh)"
    exit 77
fi
src_version=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || stat -c %Y "$tarball")

# ------------------------------------------------------------------ keys
keys=$dir/keys
mkdir -p "$keys"
# cert NAME SUBJECT [openssl x509 -req options]: a 2048-bit RSA key and its certificate;
# self-signed without options. ECDSA is not built in: the keys must be RSA.
cert() {
    local name=$1 subj=$2
    shift 2
    [[ -s $keys/$name.pem && -s $keys/$name.key ]] && return 0
    openssl req -new -newkey rsa:2048 -nodes -sha256 -subj "/CN=$subj" \
        -keyout "$keys/$name.key" -out "$keys/$name.csr" 2>/dev/null
    if (($#)); then
        openssl x509 -req -sha256 -days 10950 -in "$keys/$name.csr" "$@" \
            -out "$keys/$name.pem" 2>/dev/null
    else
        openssl x509 -req -sha256 -days 10950 -in "$keys/$name.csr" -signkey "$keys/$name.key" \
            -extfile "$keys/ext.cnf" -extensions ca -out "$keys/$name.pem" 2>/dev/null
    fi
    rm -f "$keys/$name.csr"
    say "made $keys/$name.pem"
}
cat >"$keys/ext.cnf" <<'EOF'
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, digitalSignature, keyCertSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
if [[ ! -s $keys/ca.pem ]]; then rm -f "$keys/leaf.pem"; fi # a new CA needs a new leaf
cert ca "extmerge test CA (tests only)"
cert untrusted "extmerge untrusted test key (tests only)"
cert leaf "extmerge test leaf (tests only)" -CA "$keys/ca.pem" -CAkey "$keys/ca.key" \
    -set_serial 2 -extfile "$keys/ext.cnf" -extensions leaf
openssl x509 -in "$keys/leaf.pem" -outform der -out "$keys/leaf.der"

# ------------------------------------------------------------------ cache
stamp=$( {
    sha256sum <"${BASH_SOURCE[0]}"
    sha256sum <"$keys/ca.pem"
    echo "linux-source-6.1 $src_version"
} | sha256sum | cut -d' ' -f1)
if [[ -s $dir/bzImage && -f $dir/stamp && $(cat "$dir/stamp") == "$stamp" ]]; then
    say "cached kernel matches (stamp $stamp)"
    echo "$dir/bzImage"
    exit 0
fi
rm -f "$dir/stamp"

# ------------------------------------------------------------------ source tree
# The kernel's Makefile refuses a source directory whose path has a space or a colon:
# then the tree goes to a directory of its own under /var/tmp (named after $dir), which
# is removed again once the kernel is built (only the kernel is cached).
src=$dir/src
if [[ $src == *[[:space:]:]* ]]; then
    src=/var/tmp/extmerge-kbuild-$(printf '%s' "$dir" | sha256sum | cut -c1-12)
    say "$dir has a space or colon: building in $src"
fi
tree=$src/linux-source-6.1
if [[ ! -f $tree/Makefile || $(cat "$src/version" 2>/dev/null) != "$src_version" ]]; then
    rm -rf "$src"
    mkdir -p "$src"
    say "unpacking $tarball ($src_version)"
    tar -xaf "$tarball" -C "$src"
    echo "$src_version" >"$src/version"
fi
cd "$tree"
# In the tree, so that .config holds a relative path.
cp "$keys/ca.pem" certs/extmerge-test-ca.pem

# Reproducible: no host name, user or build time in the image.
export ARCH=x86_64 KBUILD_BUILD_USER=extmerge KBUILD_BUILD_HOST=tests KBUILD_BUILD_VERSION=1
KBUILD_BUILD_TIMESTAMP=$(date -u -r "$tarball" '+%Y-%m-%d')
export KBUILD_BUILD_TIMESTAMP

# ------------------------------------------------------------------ config
make -s tinyconfig >"$dir/config.log" 2>&1 || { cat "$dir/config.log" >&2; exit 1; }
args=()
for o in "${Y[@]}"; do args+=(--enable "$o"); done
for o in "${N[@]}"; do args+=(--disable "$o"); done
scripts/config "${args[@]}" \
    --set-str SYSTEM_TRUSTED_KEYS certs/extmerge-test-ca.pem \
    --set-str LOCALVERSION -extmerge-test \
    --set-str DEFAULT_HOSTNAME vm
make -s olddefconfig >>"$dir/config.log" 2>&1 || { cat "$dir/config.log" >&2; exit 1; }
bad=0
for o in "${Y[@]}"; do
    grep -qx "CONFIG_$o=y" .config || { say "CONFIG_$o is not =y after olddefconfig"; bad=1; }
done
for o in "${N[@]}"; do
    ! grep -q "^CONFIG_$o=y" .config || { say "CONFIG_$o is still set"; bad=1; }
done
grep -qx 'CONFIG_SYSTEM_TRUSTED_KEYS="certs/extmerge-test-ca.pem"' .config ||
    { say "CONFIG_SYSTEM_TRUSTED_KEYS is not set"; bad=1; }
((bad == 0)) || exit 1

# ------------------------------------------------------------------ build
start=$SECONDS
say "building with -j$jobs (19 min of CPU time: about 10 min on 2 idle cores)"
if ! make -s -j"$jobs" bzImage >"$dir/build.log" 2>&1; then
    tail -n 40 "$dir/build.log" >&2
    say "build failed (log: $dir/build.log)"
    exit 1
fi
cp arch/x86/boot/bzImage "$dir/bzImage"
cp .config "$dir/config"
echo "$stamp" >"$dir/stamp"
say "built $(make -s kernelrelease) in $((SECONDS - start)) s (stamp $stamp)"
if [[ $src != "$dir/src" ]]; then
    cd /
    rm -rf "$src"
fi
echo "$dir/bzImage"
