#!/bin/bash
# Boot tests for extmerge-initrd: build real initrds (dracut with and without systemd, and
# a mkosi-initrd-style tree) with the project's initrd-hooks, boot Debian's cloud kernel
# in qemu (TCG only, never /dev/kvm) on a small ext4 real root that carries a sysext and
# a confext, and check what the real root's first process sees.
#
# Usage (as root, from anywhere):  tests/boot/run-boot-tests.sh [--keep] [--jobs N]
#                          [--runs N] [--timeout SECS] [--extra]
#   --keep           keep the temp dir (initrds, images, consoles, reports, dmesg)
#   --jobs N         boots run N at a time (default 2 = the cores here; TCG is CPU-bound)
#   --runs N         boots per variant for the timing table (default 3; 0 = no table)
#   --timeout S      per-boot timeout (default 180)
#   --extra          (no extra boots any more; kept for compatibility)
#   --only REGEX     boot only the boots whose name matches (while working on some;
#                    the checks of the others then fail)
# Environment: EXTMERGE_INITRD_BIN=PATH uses that binary instead of building it;
#              TMPDIR (default /var/tmp) is where the temp dir goes.
#
# Boots (each its own qemu, TCG, -no-reboot, root image opened with snapshot=on):
#   (1) dracut+systemd, extmerge-initrd.service: t-with-1..N (also the timing samples);
#       t-without-1..N: the same initrd without the extmerge module (timing only)
#   (2) f2: dracut without systemd, pre-pivot hook
#   (3) f3: mkosi-initrd-style initrd (assembled from the dracut one, cpio)
#   (4) f4-corrupt-systemd: a sysext that breaks the sysext class; f4-fatal-shell: same
#       with extmerge.fatal=1 in the shell flow
#   (5) f5-disabled-systemd, f5-disabled-shell: extmerge=0
#   (6) the real root's own systemd-sysext (Debian's 252) checks the merges in every boot,
#       then unmerges them; the init re-executes itself and checks that the DDI's dm and
#       loop devices went away
#   (7) f7-badhash-systemd: the verity DDI with a wrong .usrhash (dm-verity refuses it)
#   (8) required extensions (extmerge.require=): f8-require-systemd (one missing, the
#       DDI with the wrong .usrhash), f8-require-shell (the DDI), f8-require-mkosi (one
#       missing): each boot must stop, the console naming the extension and the reason.
#       The successful boots of (1), (2), (3) require testsys and the DDI on the kernel
#       command line and testconf in the root's /etc/extmerge/initrd.conf, and their
#       boot report (/run/extmerge/report.json) and `extmerge status` are checked.
#   (9) UKI/ESP extensions (extmerge.extra=sysroot): the initrds with an appended cpio that
#       holds /.extra/sysext/uki.raw (a DDI signed by the test CA): f9-extra-systemd,
#       f9-extra-shell, f9-extra-mkosi boot the signed test kernel (tests/vm/
#       signed-kernel.sh) and must show uki's files on the real root, also with the page
#       cache dropped after switch-root emptied the initramfs; f9-noextra-systemd (no
#       switch) must not; f9-untrusted-shell (Debian's kernel: ENOKEY) and
#       f9-unsigned-systemd (no signature: the strict /.extra policy) require uki and stop.
# The root images carry, besides directory extensions, a verity-protected GPT DDI
# /var/lib/extensions/testddi.raw (usr + usr-verity, erofs, root hash in testddi.usrhash;
# built by make-verity-ddi.sh), checked in flows (1), (2), (3).
#
# Exits 0 with "SKIP: ..." (with CI set: fails) when qemu, the kernel or dracut are missing after trying to
# install them; otherwise ends with "N passed, M failed" and exits non-zero on failure.
# Nothing outside the temp dir is written: dracut runs from a private copy of
# /usr/lib/dracut (dracutbasedir=) with a private, empty config, the hooks are installed
# with DESTDIR= into the temp dir, disks are built with `mkfs.ext4 -d` (no loop
# devices, no host mounts), and qemu opens the root image with snapshot=on.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROJ=$(cd "$HERE/../.." && pwd)
KEEP=0 JOBS=2 RUNS=3 BOOT_TIMEOUT=180 MEM=512M EXTRA=0 ONLY=""
while (($#)); do
    case $1 in
        --keep) KEEP=1; shift ;;
        --jobs) JOBS=${2:?}; shift 2 ;;
        --runs) RUNS=${2:?}; shift 2 ;;
        --no-timing) RUNS=0; shift ;;
        --timeout) BOOT_TIMEOUT=${2:?}; shift 2 ;;
        --extra) EXTRA=1; shift ;;
        --only) ONLY=${2:?}; shift 2 ;;
        -h|--help) sed -n '2,/^set -uo pipefail/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

T0=$(date +%s.%N)
now() { awk -v s="$T0" -v e="$(date +%s.%N)" 'BEGIN { printf "%5.1f", e - s }'; }
say() { echo "[$(now)s] $*"; }
# A boot that cannot run here is a SKIP for a developer, a failure in CI.
skip() {
    if [[ -n ${CI:-} ]]; then echo "FAIL: $* (CI is set: the boot tests must run)"; echo "0 passed, 1 failed"; exit 1; fi
    echo "SKIP: $*"; exit 0
}
fatal() { echo "ERROR: $*" >&2; echo "0 passed, 1 failed"; exit 1; }

PASS=0 FAIL=0 FAILED_FLOWS=()
pass() { PASS=$((PASS + 1)); echo "  PASS  $1: $2"; }
fail() { FAIL=$((FAIL + 1)); echo "  FAIL  $1: $2${3:+ (got: $3)}"; FAILED_FLOWS+=("$1"); }

# ============================================================ 1. dependencies
[[ $(id -u) == 0 ]] || skip "boot tests need root (the kernel in /boot is root-only, dracut)"
apt_install() {   # packages...
    command -v apt-get >/dev/null || return 1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends --no-upgrade \
        -o DPkg::Lock::Timeout=300 "$@" >/dev/null 2>&1
}
bash "$PROJ/tests/deps.sh" >/dev/null 2>&1 || say "note: tests/deps.sh failed"
# dracut-core, NOT dracut: the `dracut` package removes initramfs-tools.
[[ -f /usr/lib/dracut/dracut-init.sh ]] || apt_install dracut-core || true
command -v mkfs.ext4 >/dev/null || apt_install e2fsprogs || true
command -v cpio >/dev/null || apt_install cpio || true
# The verity DDI (tests/boot/make-verity-ddi.sh): userspace tools only.
command -v mkfs.erofs >/dev/null || apt_install erofs-utils || true
command -v veritysetup >/dev/null || apt_install cryptsetup-bin || true
command -v sfdisk >/dev/null || apt_install fdisk || true
command -v jq >/dev/null || apt_install jq || true   # the boot report's checks
static_busybox=""
for b in /bin/busybox /usr/bin/busybox; do
    if [[ -x $b ]] && ! ldd "$b" >/dev/null 2>&1; then static_busybox=$b; break; fi
done
[[ -n $static_busybox ]] || { apt_install busybox-static || true; }
for b in /bin/busybox /usr/bin/busybox; do
    if [[ -x $b ]] && ! ldd "$b" >/dev/null 2>&1; then static_busybox=$b; break; fi
done

QEMU=$(command -v qemu-system-x86_64 || true)
KERNEL=$(find /boot -maxdepth 1 -name 'vmlinuz-*-cloud-amd64' 2>/dev/null | sort -V | tail -n1)
KVER=${KERNEL##*/vmlinuz-}
missing=()
[[ -n $QEMU ]] || missing+=("qemu-system-x86_64")
[[ -n $KERNEL && -r $KERNEL ]] || missing+=("/boot/vmlinuz-*-cloud-amd64")
[[ -n $KERNEL && -f /lib/modules/$KVER/modules.dep ]] || missing+=("/lib/modules/$KVER")
[[ -f /usr/lib/dracut/dracut-init.sh ]] && command -v dracut >/dev/null || missing+=("dracut-core")
command -v mkfs.ext4 >/dev/null || missing+=("mkfs.ext4")
command -v cpio >/dev/null || missing+=("cpio")
command -v mkfs.erofs >/dev/null || missing+=("mkfs.erofs (erofs-utils)")
command -v veritysetup >/dev/null || missing+=("veritysetup (cryptsetup-bin)")
command -v sfdisk >/dev/null || missing+=("sfdisk (fdisk)")
command -v jq >/dev/null || missing+=("jq")
[[ -n $static_busybox ]] || missing+=("busybox-static")
((${#missing[@]} == 0)) || skip "missing after trying to install: ${missing[*]}"

# Kernel modules a verity DDI sysext needs in the initrd (what the dracut module's
# installkernel lists, minus squashfs/ext4 which these images do not use), with their
# module dependencies: paths relative to /lib/modules/$KVER. Built-in ones are left out.
KMODS_WANTED="overlay loop dm-mod dm-verity erofs"
kmod_closure() {   # module names...
    local -A seen=()
    local queue=("$@") m p d
    while ((${#queue[@]})); do
        m=${queue[0]}; queue=("${queue[@]:1}")
        [[ -n ${seen[$m]:-} ]] && continue
        seen[$m]=1
        p=$(modinfo -k "$KVER" -n "$m" 2>/dev/null) || { echo "?$m"; continue; }
        [[ $p == /* ]] || continue   # (builtin)
        echo "${p#/lib/modules/$KVER/}"
        d=$(modinfo -k "$KVER" -F depends "$m" 2>/dev/null)
        # shellcheck disable=SC2206
        [[ -n $d ]] && queue+=(${d//,/ })
    done
}
mapfile -t KMOD_PATHS < <(kmod_closure $KMODS_WANTED)
[[ ${KMOD_PATHS[*]} == *'?'* ]] && fatal "modinfo does not know: ${KMOD_PATHS[*]}"

# ============================================================ 2. the binary
if [[ -n ${EXTMERGE_INITRD_BIN:-} ]]; then
    BIN=$EXTMERGE_INITRD_BIN
else
    command -v cargo >/dev/null || skip "cargo missing and EXTMERGE_INITRD_BIN not set"
    say "building extmerge-initrd and extmerge (static, profile initrd)"
    (cd "$PROJ" && RUSTFLAGS='-C target-feature=+crt-static' cargo build -q --profile initrd \
        --bin extmerge-initrd --bin extmerge --target x86_64-unknown-linux-gnu) ||
        fatal "cargo build of extmerge-initrd failed"
    BIN=$PROJ/target/x86_64-unknown-linux-gnu/initrd/extmerge-initrd
fi
# The CLI for the real root (`extmerge status` after switch-root): next to the initrd
# binary, or EXTMERGE_CLI_BIN; it must be static too (the root has no libc).
CLI_BIN=${EXTMERGE_CLI_BIN:-$(dirname "$BIN")/extmerge}
[[ -x $CLI_BIN ]] && ldd "$CLI_BIN" 2>&1 | grep -qE 'statically linked|not a dynamic executable' ||
    fatal "$CLI_BIN missing or not static (set EXTMERGE_CLI_BIN to a static extmerge)"
[[ -x $BIN ]] || fatal "$BIN missing"
ldd "$BIN" 2>&1 | grep -qE 'statically linked|not a dynamic executable' ||
    fatal "$BIN is dynamically linked; the initrd wants it static"

# ============================================================ temp dir, cleanup
W=$(mktemp -d "${TMPDIR:-/var/tmp}/extmerge-boot.XXXXXX")
BG_PIDS=()
cleanup() {
    local rc=$? p
    trap - EXIT INT TERM HUP
    for p in "$W"/boots/*/qemu.pid; do
        [[ -f $p ]] && kill "$(cat "$p")" 2>/dev/null
    done
    for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    if ((KEEP)); then echo "kept: $W"; else rm -rf "$W"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo interrupted >&2; exit 130' INT TERM HUP
mkdir -p "$W/boots" "$W/logs"
say "work dir $W, kernel $KERNEL, binary $BIN"

# ============================================================ 3. hooks + private dracut
# The project's install.sh into a DESTDIR, as a distribution package would do it.
DEST=$W/destdir
DESTDIR=$DEST PREFIX=/usr sh "$PROJ/initrd-hooks/install.sh" "$BIN" >"$W/logs/install.log" 2>&1 ||
    fatal "initrd-hooks/install.sh failed: $(cat "$W/logs/install.log")"
# A private dracut: a copy of /usr/lib/dracut plus the module from the DESTDIR install.
# dracutbasedir= makes dracut take its functions and modules.d from there; --conf and
# --confdir keep /etc/dracut.conf* out; DRACUT_PATH puts $DEST/usr/bin (where
# extmerge-initrd is) on the path dracut searches (check() uses require_binaries).
cp -a /usr/lib/dracut "$W/dracut"
cp -a "$DEST/usr/lib/dracut/modules.d/90extmerge" "$W/dracut/modules.d/"
mkdir -p "$W/dracut.conf.d" "$W/dracut-tmp"
dracut_build() {   # OUT LOG dracut-args...
    local out=$1 log=$2; shift 2
    DRACUT_PATH="$DEST/usr/bin /usr/sbin /usr/bin /sbin /bin" dracutbasedir="$W/dracut" \
        dracut --conf /dev/null --confdir "$W/dracut.conf.d" --tmpdir "$W/dracut-tmp" \
        --no-hostonly --no-hostonly-cmdline --no-compress --nostrip --force \
        --no-early-microcode --kver "$KVER" --add-drivers "virtio_pci virtio_blk" \
        "$@" "$out" >"$log" 2>&1
}
SD_MODS="systemd systemd-initrd dracut-systemd base rootfs-block fs-lib udev-rules"
SH_MODS="base rootfs-block fs-lib udev-rules"
say "building 3 initrds with dracut $(dracut --version 2>/dev/null | awk '{print $2}') (in parallel)"
dracut_build "$W/initrd-sd.img" "$W/logs/dracut-sd.log" -m "$SD_MODS extmerge" & b1=$!
dracut_build "$W/initrd-sd0.img" "$W/logs/dracut-sd0.log" -m "$SD_MODS" & b2=$!
dracut_build "$W/initrd-sh.img" "$W/logs/dracut-sh.log" -m "$SH_MODS extmerge" \
    --omit "systemd systemd-initrd dracut-systemd" & b3=$!
BG_PIDS=("$b1" "$b2" "$b3")
for b in sd:$b1 sd0:$b2 sh:$b3; do
    wait "${b#*:}" || fatal "dracut (${b%%:*}) failed: $(tail -n 20 "$W/logs/dracut-${b%%:*}.log")"
done
BG_PIDS=()
lsi() { dracutbasedir="$W/dracut" lsinitrd "$1" 2>/dev/null; }
lsi "$W/initrd-sd.img" >"$W/logs/ls-sd.txt"
lsi "$W/initrd-sd0.img" >"$W/logs/ls-sd0.txt"
lsi "$W/initrd-sh.img" >"$W/logs/ls-sh.txt"
say "initrds built: sd $(($(stat -c %s "$W/initrd-sd.img") >> 20)) MiB, sd0 (no extmerge) $(($(stat -c %s "$W/initrd-sd0.img") >> 20)) MiB, sh $(($(stat -c %s "$W/initrd-sh.img") >> 20)) MiB"

# dracut logs a failing install() and builds anyway: check what landed in the images.
has() { grep -qE "$2" "$W/logs/ls-$1.txt"; }
echo "initrd contents (lsinitrd):"
has sd ' usr/bin/extmerge-initrd$' && pass build-sd "extmerge-initrd in the systemd initrd" ||
    fail build-sd "extmerge-initrd in the systemd initrd"
has sd 'initrd.target.wants/extmerge-initrd.service -> ' && has sd ' usr/lib/systemd/system/extmerge-initrd.service$' &&
    pass build-sd "unit + initrd.target.wants link" || fail build-sd "unit + initrd.target.wants link"
has sd 'systemd-sysext-sysroot.service.d/50-extmerge.conf$' && has sd 'systemd-confext-sysroot.service.d/50-extmerge.conf$' &&
    pass build-sd "drop-ins for systemd's sysroot units" || fail build-sd "drop-ins for systemd's sysroot units"
has sd 'hooks/pre-pivot/.*extmerge' && fail build-sd "no pre-pivot hook in the systemd flow" ||
    pass build-sd "no pre-pivot hook in the systemd flow (the unit does it)"
# Every module a verity DDI needs (and what they depend on), or a clear list of what is not there.
check_kmods() {   # FLOW LS-NAME
    local p miss=() names=()
    for p in "${KMOD_PATHS[@]}"; do
        names+=("$(basename "$p" .ko)")
        grep -qE "/${p//./\\.}(\.xz|\.gz|\.zst)?\$" "$W/logs/ls-$2.txt" || miss+=("$p")
    done
    ((${#miss[@]} == 0)) && pass "$1" "kernel modules for verity DDIs in the initrd: ${names[*]}" ||
        fail "$1" "kernel modules for verity DDIs in the initrd (${names[*]})" "MISSING: ${miss[*]}"
}
check_kmods build-sd sd
check_kmods build-sh sh
has sh ' usr/bin/extmerge-initrd$' && has sh 'hooks/pre-pivot/60-extmerge-pre-pivot\.sh$' &&
    pass build-sh "binary + pre-pivot hook in the shell initrd" || fail build-sh "binary + pre-pivot hook in the shell initrd"
has sh 'usr/lib/systemd/systemd$|extmerge-initrd\.service' && fail build-sh "no systemd in the shell initrd" ||
    pass build-sh "no systemd, no unit in the shell initrd"
has sd0 'extmerge-initrd|90extmerge|^extmerge$' && fail build-sd0 "no extmerge in the baseline initrd" ||
    pass build-sd0 "baseline systemd initrd has no extmerge"

# ------------------------------------------------------------ mkosi-initrd-style initrd
# mkosi cannot build offline here: assemble what its drop-in produces. Start from the
# dracut systemd initrd built WITHOUT the extmerge module, add the ExtraTrees= tree that
# install.sh made ($DEST/usr/lib/extmerge/initrd-tree), apply the preset as mkosi does,
# repack with cpio.
say "assembling the mkosi-initrd-style initrd (dracut systemd initrd without extmerge + initrd-tree + preset, repacked with cpio)"
MK=$W/mkosi-root
mkdir -p "$MK"
(cd "$MK" && cpio -idm --quiet <"$W/initrd-sd0.img") || fatal "cannot unpack initrd-sd0.img"
[[ -x $MK/usr/lib/systemd/systemd || -x $MK/lib/systemd/systemd ]] || fatal "unpacked initrd has no systemd"
TREE=$DEST/usr/lib/extmerge/initrd-tree
cp -a "$TREE/." "$MK/"
PRESET_HOW=""
grep -qx 'enable extmerge-initrd.service' "$MK/usr/lib/systemd/initrd-preset/50-extmerge.preset" &&
    pass build-mkosi "preset file in usr/lib/systemd/initrd-preset enables extmerge-initrd.service" ||
    fail build-mkosi "preset file in usr/lib/systemd/initrd-preset enables extmerge-initrd.service"
if SYSTEMD_LOG_LEVEL=debug systemctl --root="$MK" preset extmerge-initrd.service >"$W/logs/preset.log" 2>&1 &&
    ls "$MK"/etc/systemd/system/initrd.target.wants/extmerge-initrd.service >/dev/null 2>&1; then
    PRESET_HOW="systemctl --root=DIR preset (systemd $(systemctl --version | awk 'NR==1 {print $2}')): $(grep -iE 'preset|symlink' "$W/logs/preset.log" | sed "s#$MK##g" | tr '\n' ' ')"
    grep -q "don't specify rule" "$W/logs/preset.log" &&
        PRESET_HOW+=" [this systemctl predates initrd-preset/ (v254+): it enabled the unit by its no-rule default, not because of 50-extmerge.preset]"
else
    # What `systemctl preset --root` does for `enable` + WantedBy=initrd.target.
    mkdir -p "$MK/etc/systemd/system/initrd.target.wants"
    ln -sf /usr/lib/systemd/system/extmerge-initrd.service \
        "$MK/etc/systemd/system/initrd.target.wants/extmerge-initrd.service"
    PRESET_HOW="manual symlink (systemctl --root preset did not create it: $(tr '\n' ' ' <"$W/logs/preset.log"))"
fi
echo "  preset applied by: $PRESET_HOW"
# The extmerge drop-in adds no kernel modules; mkosi-initrd's own module selection has to
# bring overlay (and loop, dm-mod, dm-verity, erofs for images). The dracut baseline does
# not have them, so add them with their dependencies the way mkosi's module selection
# would (then depmod).
# [TEST-TREE WORKAROUND: the project's mkosi drop-in names no kernel modules]
echo "  [workaround] added $(printf '%s\n' "${KMOD_PATHS[@]}" | xargs -n1 basename | tr '\n' ' ')to the tree (the extmerge mkosi drop-in asks for no kernel modules)"
for p in "${KMOD_PATHS[@]}"; do
    [[ -f /lib/modules/$KVER/$p ]] || fatal "/lib/modules/$KVER/$p missing"
    install -Dm644 "/lib/modules/$KVER/$p" "$MK/usr/lib/modules/$KVER/$p"
done
depmod -b "$MK" "$KVER" 2>/dev/null || true
(cd "$MK" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet) >"$W/initrd-mkosi.img" ||
    fatal "cpio repack failed"
lsi "$W/initrd-mkosi.img" >"$W/logs/ls-mkosi.txt"
check_kmods build-mkosi mkosi
say "mkosi-style initrd: $(($(stat -c %s "$W/initrd-mkosi.img") >> 20)) MiB"

# ============================================================ 4. real root images
say "building the real root images (mkfs.ext4 -d)"
R=$W/rootfs
mkdir -p "$R"/{etc,usr/bin,usr/share,usr/lib,opt,bin,sbin,dev,proc,sys,run,tmp,var/lib/extensions,var/lib/confexts,mnt,root}
chmod 1777 "$R/tmp"
cat >"$R/etc/os-release" <<'EOF'
ID=debian
VERSION_ID=12
SYSEXT_LEVEL=1.0
PRETTY_NAME="extmerge boot test root"
EOF
echo "host-etc-sentinel" >"$R/etc/host-sentinel"
echo "host-usr-sentinel" >"$R/usr/share/host-sentinel"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$R/etc/passwd"
printf 'root:x:0:\n' >"$R/etc/group"
cp "$static_busybox" "$R/usr/bin/busybox"
for a in $("$static_busybox" --list); do
    [[ $a == busybox ]] || ln -sf ../usr/bin/busybox "$R/bin/$a"
done
install -m755 "$HERE/realroot-init.sh" "$R/sbin/init"
install -m755 "$CLI_BIN" "$R/usr/bin/extmerge"
# A required extension from the real root's configuration file (extmerge-initrd reads
# it before any confext covers /etc); the boots add others with extmerge.require=.
install -Dm644 /dev/stdin "$R/etc/extmerge/initrd.conf" <<'EOF'
[Initrd]
Require=testconf
EOF
mknod -m 600 "$R/dev/console" c 5 1
mknod -m 666 "$R/dev/null" c 1 3
# (6) systemd-sysext of the real root (Debian's v252, dynamic): its view of the merge
# (`status` checks `.systemd-sysext/dev` against the hierarchy's st_dev).
if SYSEXT=$(command -v systemd-sysext); then
    install -Dm755 "$SYSEXT" "$R/usr/bin/systemd-sysext"
    for lib in $(ldd "$SYSEXT" | sed -nE 's#.*=> (/[^ ]+) .*#\1#p; s#^[[:space:]]*(/[^ ]+) \(0x.*#\1#p'); do
        [[ -e $R$lib ]] || install -Dm755 "$(readlink -f "$lib")" "$R$lib"
    done
fi
# Extensions on the real root: a directory sysext, a directory confext, and a sysext for
# another OS that must be skipped.
X=$R/var/lib/extensions/testsys
install -Dm644 /dev/stdin "$X/usr/lib/extension-release.d/extension-release.testsys" <<'EOF'
ID=debian
SYSEXT_LEVEL=1.0
EOF
echo "sysext-sentinel testsys" | install -Dm644 /dev/stdin "$X/usr/share/extmerge-test/sysext-sentinel"
echo "opt-sentinel testsys" | install -Dm644 /dev/stdin "$X/opt/extmerge-test/opt-sentinel"
X=$R/var/lib/extensions/otheros
install -Dm644 /dev/stdin "$X/usr/lib/extension-release.d/extension-release.otheros" <<'EOF'
ID=fedora
VERSION_ID=40
EOF
echo "otheros-sentinel" | install -Dm644 /dev/stdin "$X/usr/share/extmerge-test/otheros-sentinel"
X=$R/var/lib/confexts/testconf
install -Dm644 /dev/stdin "$X/etc/extension-release.d/extension-release.testconf" <<'EOF'
ID=debian
VERSION_ID=12
EOF
echo "confext-sentinel testconf" | install -Dm644 /dev/stdin "$X/etc/extmerge-test/confext-sentinel"
# A verity-protected DDI sysext, laid out as systemd-repart does (make-verity-ddi.sh: GPT,
# usr-x86-64 erofs + usr-x86-64-verity, partition UUIDs = halves of the root hash, no
# signature partition: the kernel would refuse a test key). The root hash also goes into
# the sidecar testddi.usrhash, which wins over the partition UUIDs (systemd's order);
# for a usr-only image it must be .usrhash: a .roothash names the root partition, which
# this image has not (extmerge refuses that, as systemd does).
DDI=testddi DDI_RH=""
add_verity_ddi() {   # ROOTDIR
    local d=$1/var/lib/extensions
    DDI_RH=$(bash "$HERE/make-verity-ddi.sh" "$DDI" "$d/$DDI.raw" "$W/ddi-work" 2>"$W/logs/ddi.log") ||
        fatal "building the verity DDI failed: $(cat "$W/logs/ddi.log")"
    echo "$DDI_RH" >"$d/$DDI.usrhash"
    say "verity DDI $DDI.raw ($(($(stat -c %s "$d/$DDI.raw") >> 10)) KiB), root hash $DDI_RH"
}
add_verity_ddi "$R"
mkfs.ext4 -q -F -L btroot -d "$R" "$W/root.img" 96M >"$W/logs/mkfs.log" 2>&1 ||
    fatal "mkfs.ext4 -d failed: $(cat "$W/logs/mkfs.log")"
# Flow (7): the same root, but the DDI's .usrhash is wrong (last hex digit changed). The
# dm-verity table loads, reading the superblock through it fails (EIO): the sysext class
# fails as a whole, the confext class is still merged, no dm/loop device stays.
DDI_BAD_RH=${DDI_RH:0:63}$(printf %x $(((0x${DDI_RH:63:1} + 1) % 16)))
echo "$DDI_BAD_RH" >"$R/var/lib/extensions/$DDI.usrhash"
mkfs.ext4 -q -F -L btroot -d "$R" "$W/root-badhash.img" 96M >>"$W/logs/mkfs.log" 2>&1 ||
    fatal "mkfs.ext4 -d failed: $(cat "$W/logs/mkfs.log")"
echo "$DDI_RH" >"$R/var/lib/extensions/$DDI.usrhash"
# Corrupt variant, flow (4): an extra sysext `broken` whose release data is valid (so it is
# selected) but whose `opt` is a regular file. Planning opens <ext>/opt as a directory for
# every selected extension: ENOTDIR is a hard error for the whole sysext class
# (plan.rs: plan_in -> open_opt), like systemd-sysext's "Failed to check if hierarchy is
# empty". The confext class is independent and must still be merged. The (good) verity
# DDI is opened during planning, before the failure: its dm and loop devices must go again.
X=$R/var/lib/extensions/broken
install -Dm644 /dev/stdin "$X/usr/lib/extension-release.d/extension-release.broken" <<'EOF'
ID=debian
SYSEXT_LEVEL=1.0
EOF
echo "broken-sentinel" | install -Dm644 /dev/stdin "$X/usr/share/extmerge-test/broken-sentinel"
echo "not a directory" >"$X/opt"
mkfs.ext4 -q -F -L btroot -d "$R" "$W/root-corrupt.img" 96M >>"$W/logs/mkfs.log" 2>&1 ||
    fatal "mkfs.ext4 -d failed: $(cat "$W/logs/mkfs.log")"

# ------------------------------------------------------------ (9) UKI and ESP extensions
# systemd-stub puts a UKI's and the ESP's extensions into the initrd as extra cpio
# archives under /.extra/; here one is appended to each initrd: /.extra/sysext/uki.raw, a
# verity DDI signed by the test CA of tests/vm/signed-kernel.sh (whose kernel trusts it;
# Debian's does not), its files under /usr/share/extmerge-extra. A second cpio holds the
# same DDI without its signature partition (refused by the strict /.extra policy).
declare -A BOOT_KERNEL=()
SKERNEL="" skrc=0
SKERNEL=$(bash "$PROJ/tests/vm/signed-kernel.sh" 2>"$W/logs/signed-kernel.log" | tail -n1) || skrc=$?
if ((skrc != 0)) || [[ ! -s $SKERNEL ]]; then
    fail build-extra "the signed test kernel (tests/vm/signed-kernel.sh, status $skrc)" "$(tail -n3 "$W/logs/signed-kernel.log" | tr '\n' '|')"
    SKERNEL=$KERNEL
else
    pass build-extra "the signed test kernel: $SKERNEL"
fi
SKEYS=$(dirname "$SKERNEL")/keys
extra_initrds() {   # SUFFIX DDI-ENV...: initrd-{sd,sh,mkosi}-SUFFIX.img with /.extra/sysext/uki.raw
    local s=$1 t=$W/extra-$1 i
    shift
    rm -rf "$t" && mkdir -p "$t/.extra/sysext"
    env DDI_SHARE_DIR=extmerge-extra "$@" bash "$HERE/make-verity-ddi.sh" uki "$t/.extra/sysext/uki.raw" "$W/ddi-work-$s" \
        >/dev/null 2>"$W/logs/ddi-$s.log" || fatal "building the /.extra DDI ($s) failed: $(cat "$W/logs/ddi-$s.log")"
    (cd "$t" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) >"$W/extra-$s.cpio"
    for i in sd sh mkosi; do cat "$W/initrd-$i.img" "$W/extra-$s.cpio" >"$W/initrd-$i-$s.img"; done
}
extra_initrds signed DDI_SIGN_KEY="$SKEYS/ca.key" DDI_SIGN_CERT="$SKEYS/ca.pem"
extra_initrds unsigned
say "initrds with /.extra/sysext/uki.raw: signed by the test CA and unsigned ($(($(stat -c %s "$W/extra-signed.cpio") >> 10)) KiB cpio each)"

# ============================================================ 5. booting
# Kernel command line of every boot: the brief's, plus quiet consoles (under TCG each
# serial character costs; the init reads the kernel log itself), systemd logging to the
# kernel log (so the real root sees "systemd[1]: Finished extmerge-initrd.service"), no
# /dev/kmsg rate limit, no CPU-bug mitigations (page-table isolation is slow under TCG),
# and a reboot (= qemu exit) instead of an emergency shell.
BASE_APPEND="root=/dev/vda rw console=ttyS0 panic=-1 rd.skipfsck fsck.mode=skip rd.shell=0 rd.emergency=reboot"
BASE_APPEND+=" loglevel=4 printk.devkmsg=on systemd.show_status=0 systemd.log_target=kmsg mitigations=off"
# boot NAME INITRD IMAGE EXTRA-APPEND: one qemu run; leaves in $W/boots/NAME: console.txt,
# report (the init's report: from the report disk, else from the console), dmesg.txt
# (the guest's whole kernel log, from the report disk), t_report (seconds from qemu start
# to the real root init's first console line), t_total, rc.
boot() {
    local name=$1 initrd=$2 img=$3 extra=$4 d=$W/boots/$1 start qpid kernel=${BOOT_KERNEL[$1]:-$KERNEL}
    mkdir -p "$d"
    truncate -s 4M "$d/report.img"
    : >"$d/console.log"
    start=$(date +%s.%N)
    timeout -k 5 "$BOOT_TIMEOUT" "$QEMU" -nodefaults -no-user-config -display none -monitor none \
        -no-reboot -accel tcg -cpu qemu64 -m "$MEM" -smp 1 \
        -kernel "$kernel" -initrd "$initrd" -append "$BASE_APPEND $extra" \
        -serial "file:$d/console.log" \
        -drive "file=$img,format=raw,if=none,id=root,snapshot=on" \
        -device virtio-blk-pci,drive=root,addr=0x4 \
        -drive "file=$d/report.img,format=raw,if=none,id=report" \
        -device virtio-blk-pci,drive=report,addr=0x5 \
        </dev/null >"$d/qemu.out" 2>&1 &
    qpid=$!
    echo "$qpid" >"$d/qemu.pid"
    while kill -0 "$qpid" 2>/dev/null; do
        if [[ ! -s $d/t_report ]] && grep -q '^EXTMERGE-BOOT-INIT' "$d/console.log" 2>/dev/null; then
            awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f\n", e - s }' >"$d/t_report"
        fi
        sleep 0.25
    done
    wait "$qpid"; echo $? >"$d/rc"
    rm -f "$d/qemu.pid"
    awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f\n", e - s }' >"$d/t_total"
    tr -d '\r' <"$d/console.log" >"$d/console.txt"
    tr -d '\0' <"$d/report.img" | sed -n '/^EXTMERGE-BOOT-REPORT-BEGIN/,/^EXTMERGE-BOOT-REPORT-END/p' >"$d/report"
    tr -d '\0' <"$d/report.img" | sed -n '/^EXTMERGE-DMESG-BEGIN/,/^EXTMERGE-DMESG-END/p' >"$d/dmesg.txt"
    if ! grep -q '^EXTMERGE-BOOT-REPORT-END' "$d/report"; then
        sed -n '/^EXTMERGE-BOOT-REPORT-BEGIN/,/^EXTMERGE-BOOT-REPORT-END/p' "$d/console.txt" >"$d/report"
    fi
    if [[ ! -s $d/t_report ]] && grep -q '^EXTMERGE-BOOT-INIT' "$d/console.txt"; then
        cp "$d/t_total" "$d/t_report"   # reported, but after the last poll
    fi
    rm -f "$d/report.img"
}

# Runs "NAME INITRD IMAGE [APPEND...]" specs, $JOBS at a time.
run_boots() {
    local spec name initrd img extra
    for spec in "$@"; do
        read -r name initrd img extra <<<"$spec"
        boot "$name" "$initrd" "$img" "${extra:-}" &
        BG_PIDS+=($!)
        while (($(jobs -rp | wc -l) >= JOBS)); do wait -n; done
    done
    wait
}

r() { sed -n "s/^$2=//p" "$W/boots/$1/report" 2>/dev/null | head -n1; }   # report value
kmsg_has() { r "$1" kmsg_extmerge | grep -qF -- "$2"; }
tailof() { tail -n "${2:-6}" "$W/boots/$1/console.txt" 2>/dev/null | tr '\n' '|'; }
opts_of() { awk '{ print $6 }' <<<"$(r "$1" "mount_$2")"; }   # per-mount options
SD_VER=$(systemctl --version 2>/dev/null | awk 'NR==1 {print $2}')

# The checks every successful merge must pass.
check_merged() {   # FLOW BOOT
    local f=$1 b=$2 h v o
    if [[ ! -s $W/boots/$b/report ]]; then
        fail "$f" "real root reached its init and reported" "no report; rc $(cat "$W/boots/$b/rc"), console: $(tailof "$b")"
        return
    fi
    pass "$f" "real root's init ran and reported ($(cat "$W/boots/$b/t_report" 2>/dev/null)s after qemu start)"
    v=$(r "$b" confext_sentinel); [[ $v == "confext-sentinel testconf" ]] && pass "$f" "confext file in /etc" || fail "$f" "confext file in /etc" "$v"
    v=$(r "$b" sysext_sentinel); [[ $v == "sysext-sentinel testsys" ]] && pass "$f" "sysext file in /usr" || fail "$f" "sysext file in /usr" "$v"
    v=$(r "$b" opt_sentinel); [[ $v == "opt-sentinel testsys" ]] && pass "$f" "sysext file in /opt" || fail "$f" "sysext file in /opt" "$v"
    v=$(r "$b" otheros_sentinel); [[ $v == MISSING ]] && pass "$f" "incompatible sysext (ID=fedora) not merged" || fail "$f" "incompatible sysext (ID=fedora) not merged" "$v"
    v=$(r "$b" ddi_sentinel); [[ $v == "ddi-sentinel $DDI" ]] && pass "$f" "verity DDI $DDI.raw: its file in /usr" || fail "$f" "verity DDI $DDI.raw: its file in /usr" "$v"
    [[ $(r "$b" host_etc) == host-etc-sentinel && $(r "$b" host_usr) == host-usr-sentinel ]] &&
        pass "$f" "root's own /etc and /usr files still there" || fail "$f" "root's own /etc and /usr files still there" "$(r "$b" host_etc) / $(r "$b" host_usr)"
    # The list file names every merged extension of the class (in every hierarchy, as
    # systemd writes it), in strverscmp order.
    for h in etc:testconf usr:$DDI,testsys opt:$DDI,testsys; do
        v=$(r "$b" "${h%%:*}_meta_list")
        [[ $v == "$(tr , ' ' <<<"${h#*:}")" ]] && pass "$f" "/${h%%:*} metadata lists ${h#*:}" || fail "$f" "/${h%%:*} metadata lists ${h#*:}" "$v"
        v=$(r "$b" "${h%%:*}_meta_dev")
        [[ $v == "$(r "$b" "${h%%:*}_stat_dev")" ]] && pass "$f" "/${h%%:*} metadata dev ($v) = st_dev of /${h%%:*}" ||
            fail "$f" "/${h%%:*} metadata dev = st_dev of /${h%%:*}" "dev=$v st_dev=$(r "$b" "${h%%:*}_stat_dev")"
        v=$(r "$b" "mount_${h%%:*}")
        [[ $v == *" - overlay "* ]] && pass "$f" "/${h%%:*} is an overlay in the booted system" || fail "$f" "/${h%%:*} is an overlay" "$v"
    done
    o=$(opts_of "$b" etc)
    [[ ,$o, == *,ro,* && ,$o, == *,nodev,* && ,$o, == *,nosuid,* && ,$o, == *,noexec,* ]] &&
        pass "$f" "/etc overlay is ro,nodev,nosuid,noexec" || fail "$f" "/etc overlay is ro,nodev,nosuid,noexec" "$o"
    o=$(opts_of "$b" usr)
    [[ ,$o, == *,ro,* && ,$o, == *,nodev,* && ,$o, != *,noexec,* ]] &&
        pass "$f" "/usr overlay is ro,nodev (exec)" || fail "$f" "/usr overlay is ro,nodev (exec)" "$o"
    if kmsg_has "$b" "merged confext extensions testconf into /etc" && kmsg_has "$b" "merged sysext extensions $DDI,testsys into /usr /opt"; then
        pass "$f" "kernel log: extmerge-initrd merged both classes"
    else
        v=$(r "$b" kmsg_extmerge)
        # Seen before commit 58c2e72: on Linux < 6.5 overlayfs parses options the legacy way,
        # accepts fsconfig(lowerdir+=...) and fails only at FSCONFIG_CMD_CREATE.
        grep -q 'unrecognized mount option "lowerdir+=' "$W/boots/$b/dmesg.txt" 2>/dev/null &&
            v+=" [kernel: 'overlayfs: unrecognized mount option \"lowerdir+=...\"': lowerdir+ used on a pre-6.5 kernel, no fallback]"
        fail "$f" "kernel log: extmerge-initrd merged both classes" "$v"
    fi
    kmsg_has "$b" "extmerge-initrd: done in " && pass "$f" "kernel log: 'done in N µs'" || fail "$f" "kernel log: 'done in N µs'" "$(r "$b" kmsg_extmerge)"
    [[ $(r "$b" run_marker) == present ]] && pass "$f" "/run/extmerge/sysroot-merged marker reached the real root" ||
        fail "$f" "/run/extmerge/sysroot-merged marker reached the real root" "$(r "$b" run_marker)"
    [[ $(r "$b" run_workspace) == "lock report.json sysroot-merged" && $(r "$b" workspace_mounts) == 0 ]] &&
        pass "$f" "no staging dirs or mounts left in /run/extmerge" ||
        fail "$f" "no staging dirs or mounts left in /run/extmerge" "ls: $(r "$b" run_workspace); mounts: $(r "$b" workspace_mounts)"
    check_ddi_devices "$f" "$b"
    if [[ -x $R/usr/bin/systemd-sysext ]]; then
        v=$(r "$b" sd_sysext_status)
        [[ $v == *"/usr $DDI"*testsys* && $v == *"/opt $DDI"*testsys* ]] &&
            pass "$f" "(6) real root's systemd-sysext $SD_VER 'status' lists /usr and /opt as merged with $DDI, testsys" ||
            fail "$f" "(6) real root's systemd-sysext $SD_VER 'status' lists the merges" "$v"
        check_unmerge "$f" "$b"
    fi
}
# The boot report /run/extmerge/report.json as the real root's init found it (one line).
jqr() { jq -r "$2" <<<"$(r "$1" report_json)" 2>&1 | tr '\n' ' ' | sed 's/ $//'; }   # BOOT FILTER
# A check that a value is exactly what is wanted.
same() {   # FLOW WHAT WANT GOT
    [[ $4 == "$3" ]] && pass "$1" "$2" || fail "$1" "$2" "$4"
}
# Every value an integer in [LO, HI] (µs).
all_in() {   # LO HI VALUES...
    local lo=$1 hi=$2 x; shift 2
    (($# > 0)) || return 1
    for x; do [[ $x =~ ^[0-9]+$ ]] && ((x >= lo && x <= hi)) || return 1; done
}
REPORT_REQ="extmerge.require=testsys,testddi"   # the successful boots' requirements
EXTRA_REQ="$REPORT_REQ extmerge.extra=sysroot extmerge.require=uki"   # (9)
# Field by field, after a successful boot with $REPORT_REQ and the root's Require=testconf.
check_report() {   # FLOW BOOT
    local f=$1 b=$2 v want
    v=$(r "$b" report_json)
    if [[ -z $v || $v == MISSING ]] || ! jq -e . >/dev/null 2>&1 <<<"$v"; then
        fail "$f" "report: /run/extmerge/report.json reached the real root as valid JSON" "${v:0:200}"
        return
    fi
    pass "$f" "report: /run/extmerge/report.json reached the real root as valid JSON ($(r "$b" report_mode))"
    same "$f" "report: a regular file, 0644, root's" "644 root regular file" "$(r "$b" report_mode)"
    same "$f" "report: version 1, verb sysroot, root /sysroot, ok" "1 sysroot /sysroot true" \
        "$(jqr "$b" '[.version, .verb, .root, .ok] | map(tostring) | join(" ")')"
    same "$f" "report: kernel command-line switches in force: $REPORT_REQ" "$REPORT_REQ" "$(jqr "$b" '.cmdline | join(" ")')"
    same "$f" "report: required testconf (root's /etc/extmerge/initrd.conf), testsys, testddi (kernel command line), all met" \
        "testconf:config:true:null testsys:cmdline:true:null testddi:cmdline:true:null" \
        "$(jqr "$b" '[.required[] | "\(.name):\(.source):\(.met):\(.reason)"] | join(" ")')"
    same "$f" "report: classes confext, sysext merged, no error" "confext:merged:null sysext:merged:null" \
        "$(jqr "$b" '[.classes[] | "\(.class):\(.result):\(.error)"] | join(" ")')"
    want="confext:testconf:directory:merged:null:null sysext:otheros:directory:skipped:null:null sysext:$DDI:raw:merged:verified:none sysext:testsys:directory:merged:null:null"
    same "$f" "report: entries with kind, verdict, verity, signature ($want)" "$want" \
        "$(jqr "$b" '[.classes[] | .class as $c | .entries[] | select(.kind != "other") | "\($c):\(.name):\(.kind):\(.verdict):\(.verity):\(.signature)"] | join(" ")')"
    v=$(jqr "$b" '[.classes[].entries[] | select(.verdict == "merged") | .reason] | unique | join(",")')$(jqr "$b" '.classes[].entries[] | select(.name == "otheros") | .reason')
    [[ $v == *"ID=fedora"* && $v != *merged* ]] && pass "$f" "report: merged entries give no reason, otheros says why it was skipped ($(jqr "$b" '.classes[].entries[] | select(.name == "otheros") | .reason'))" ||
        fail "$f" "report: reasons" "$v"
    v=$(jqr "$b" '[.classes[].entries[] | select(.kind == "other") | .verdict + ":" + (.reason // "-")] | unique | join(" | ")')
    echo "  info  $f: report: directory entries that are no extensions: [$v]"
    # Phase times: integers, above 0 where work was done, below the whole run.
    local total phases ddi
    total=$(jqr "$b" '.total_usec')
    phases=$(jqr "$b" '[.classes[].phases_usec | .discover, .inspect, .mount] | map(tostring) | join(" ")')
    # shellcheck disable=SC2086
    all_in 1 60000000 $total $phases && (($(jqr "$b" '[.classes[].phases_usec[]] | add') <= total)) &&
        pass "$f" "report: phase times per class (discover inspect mount, µs: $phases) plausible, their sum <= total_usec $total" ||
        fail "$f" "report: phase times per class plausible, sum <= total_usec" "phases $phases total $total"
    ddi=$(jqr "$b" ".classes[].entries[] | select(.name == \"$DDI\") | .phases_usec | [.inspect, .verity_setup, .mount] | map(tostring) | join(\" \")")
    # shellcheck disable=SC2086
    if all_in 1 60000000 $ddi && set -- $ddi && (($2 + $3 <= $1)); then
        pass "$f" "report: $DDI phase times (inspect, verity_setup, mount µs: $ddi), setup + mount <= inspect"
    else
        fail "$f" "report: $DDI phase times plausible" "$ddi"
    fi
    same "$f" "report: directories have an inspect time and no verity_setup/mount" "number:null:null" \
        "$(jqr "$b" '[.classes[].entries[] | select(.kind == "directory") | .phases_usec | "\(.inspect|type):\(.verity_setup):\(.mount)"] | unique | join(" ")')"
    same "$f" "report: overlays (hierarchy=layers, topmost first): /etc=testconf /usr=testsys,$DDI /opt=testsys" \
        "/etc=testconf /usr=testsys,$DDI /opt=testsys" \
        "$(jqr "$b" '[.classes[].overlays[] | "\(.hierarchy)=\(.layers | join(","))"] | join(" ")')"
    # `extmerge status` of the booted system (the root carries the static CLI).
    v=$(r "$b" extmerge_status)
    [[ $v == *"In the initrd (/run/extmerge/report.json):|  confext testconf: merged|  sysext $DDI: merged|  sysext testsys: merged|"* && $v == *"  sysext: "*" skipped"* ]] &&
        pass "$f" "extmerge status: the initrd's section lists testconf, $DDI, testsys merged and the skipped count" ||
        fail "$f" "extmerge status: the initrd's section" "$v"
    v=$(jq -r '[.[] | "\(.hierarchy):\(.initrd.result):\(.initrd.merged | join(","))"] | join(" ")' <<<"$(r "$b" extmerge_status_json)" 2>&1)
    [[ $v == "/etc:merged:testconf /opt:merged:$DDI,testsys /usr:merged:$DDI,testsys" ]] &&
        pass "$f" "extmerge status --json: each row's \"initrd\" field ($v)" ||
        fail "$f" "extmerge status --json: each row's \"initrd\" field" "$v | $(r "$b" extmerge_status_json | head -c 300)"
}
# A boot that must stop in the initrd because a required extension is not merged.
check_require_stop() {   # FLOW BOOT KIND(systemd|shell) MESSAGES...
    local f=$1 b=$2 kind=$3 m; shift 3
    [[ ! -s $W/boots/$b/report ]] && pass "$f" "the boot stops before the real root" ||
        fail "$f" "the boot stops before the real root" "the real root's init ran: $(r "$b" kmsg_extmerge)"
    for m; do
        grep -qF -- "extmerge-initrd: required extension $m" "$W/boots/$b/console.txt" &&
            pass "$f" "console: $(grep -m1 -oF -- "required extension $m" "$W/boots/$b/console.txt")... ($(grep -m1 -F -- "required extension ${m%% *}" "$W/boots/$b/console.txt" | sed 's/.*stopping the boot: //' | cut -c1-160))" ||
            fail "$f" "console names it: required extension $m" "$(grep -m3 'extmerge-initrd' "$W/boots/$b/console.txt" | tr '\n' '|')"
    done
    if [[ $kind == systemd ]]; then
        grep -qE "extmerge-initrd.service: (Main process exited, code=exited, status=1|Failed with result 'exit-code')|Failed to start extmerge-initrd.service" "$W/boots/$b/console.txt" 2>/dev/null &&
            pass "$f" "extmerge-initrd.service failed (OnFailure=emergency.target)" ||
            fail "$f" "extmerge-initrd.service failed" "$(grep -m3 'extmerge-initrd.service' "$W/boots/$b/console.txt" | tr '\n' '|')"
    else
        grep -q 'FATAL: extmerge-initrd' "$W/boots/$b/console.txt" && pass "$f" "the pre-pivot hook dies (dracut's emergency action)" ||
            fail "$f" "the pre-pivot hook dies" "$(tailof "$b")"
    fi
}
# The verity DDI's block devices while merged (read by the real init from /sys/block).
check_ddi_devices() {   # FLOW BOOT
    local f=$1 b=$2 v l n=0 ok=1
    v=$(r "$b" dm_names)
    [[ $v == "$DDI_RH-verity" ]] && pass "$f" "verity DDI: one dm device, named <root hash>-verity" ||
        fail "$f" "verity DDI: one dm device named $DDI_RH-verity" "$v"
    # loopN=BACKING@OFFSET+SIZELIMIT,autoclear=A,ro=R
    for l in $(r "$b" loops); do
        [[ $l == *"=/var/lib/extensions/$DDI.raw@"* ]] || continue
        n=$((n + 1))
        [[ $l == *",autoclear=1,ro=1" ]] || ok=0
    done
    [[ $n == 2 ]] && pass "$f" "verity DDI: two loop devices (data, hash tree) bound to /var/lib/extensions/$DDI.raw" ||
        fail "$f" "verity DDI: two loop devices bound to /var/lib/extensions/$DDI.raw" "$(r "$b" loops)"
    ((n && ok)) && pass "$f" "verity DDI: its loop devices are read-only and autoclear" ||
        fail "$f" "verity DDI: its loop devices are read-only and autoclear" "$(r "$b" loops)"
    v=$(r "$b" dm_slaves)
    [[ $v =~ ^dm-[0-9]+:loop[0-9]+,loop[0-9]+$ ]] && pass "$f" "verity DDI: the dm device sits on two loop devices ($v)" ||
        fail "$f" "verity DDI: the dm device sits on two loop devices" "$v"
}
# (6) `systemd-sysext unmerge` of the real root, after extmerge-initrd's merge.
check_unmerge() {   # FLOW BOOT
    local f=$1 b=$2 v
    v=$(r "$b" sd_unmerge_rc)
    [[ $v == 0 ]] && pass "$f" "(6) systemd-sysext $SD_VER 'unmerge' exits 0" ||
        fail "$f" "(6) systemd-sysext $SD_VER 'unmerge' exits 0" "rc $v: $(r "$b" sd_unmerge_out)"
    v="$(r "$b" mount_usr_after_unmerge)|$(r "$b" mount_opt_after_unmerge)"
    [[ $v != *" - overlay "* ]] && pass "$f" "(6) after unmerge /usr and /opt are no overlays (mountinfo)" ||
        fail "$f" "(6) after unmerge /usr and /opt are no overlays" "$v"
    v="$(r "$b" sysext_sentinel_after_unmerge) $(r "$b" opt_sentinel_after_unmerge) $(r "$b" ddi_sentinel_after_unmerge) $(r "$b" usr_meta_list_after_unmerge)"
    [[ $v == "MISSING MISSING MISSING MISSING" ]] && pass "$f" "(6) after unmerge the sysext and DDI files and /usr/.systemd-sysext are gone" ||
        fail "$f" "(6) after unmerge the sysext and DDI files are gone" "$v"
    [[ $(r "$b" host_usr_after_unmerge) == host-usr-sentinel ]] && pass "$f" "(6) after unmerge the root's own /usr is back" ||
        fail "$f" "(6) after unmerge the root's own /usr is back" "$(r "$b" host_usr_after_unmerge)"
    # v252 knows no confexts: /etc stays merged.
    [[ $(r "$b" mount_etc_after_unmerge) == *" - overlay "* && $(r "$b" confext_sentinel_after_unmerge) == "confext-sentinel testconf" ]] &&
        pass "$f" "(6) systemd-sysext $SD_VER leaves the confext on /etc alone" ||
        fail "$f" "(6) systemd-sysext $SD_VER leaves the confext on /etc alone" "$(r "$b" mount_etc_after_unmerge)"
    echo "  info  $f: right after unmerge, while PID 1 still runs /usr/bin/busybox opened through the old overlay: dm: [$(r "$b" dm_after_unmerge)] loops: [$(r "$b" loops_after_unmerge)]"
    [[ -z "$(r "$b" dm_after_reexec)$(r "$b" loops_after_reexec)" ]] &&
        pass "$f" "(6) once nothing uses the old overlay (init re-executed), the DDI's dm-verity and loop devices are gone (waited $(r "$b" reexec_wait_ds)/10 s)" ||
        fail "$f" "(6) once nothing uses the old overlay, the DDI's dm-verity and loop devices are gone" "dm: $(r "$b" dm_after_reexec); loops: $(r "$b" loops_after_reexec)"
}
# No dm device and no bound loop device in the real root.
check_no_devices() {   # FLOW BOOT WHAT
    local v="$(r "$2" dm_names)$(r "$2" loops)"
    [[ -z $v && -s $W/boots/$2/report ]] && pass "$1" "no dm device (/sys/block/dm-*) and no bound loop device left ($3)" ||
        fail "$1" "no dm device and no bound loop device left ($3)" "dm: $(r "$2" dm_names); loops: $(r "$2" loops)"
}
unit_ran() {   # FLOW BOOT
    local v
    v=$(r "$2" kmsg_extmerge)
    [[ $v == *"Finished extmerge-initrd.service"* ]] &&
        pass "$1" "systemd ran extmerge-initrd.service (kernel log: Finished extmerge-initrd.service)" ||
        fail "$1" "systemd ran extmerge-initrd.service" "$v"
}
check_corrupt() {   # FLOW BOOT
    local f=$1 b=$2 v
    if [[ ! -s $W/boots/$b/report ]]; then
        fail "$f" "boot continued to the real root" "no report; console: $(tailof "$b")"
        return
    fi
    pass "$f" "boot continued to the real root's init"
    v=$(r "$b" confext_sentinel); [[ $v == "confext-sentinel testconf" ]] && pass "$f" "confext class still merged" || fail "$f" "confext class still merged" "$v"
    v="$(r "$b" sysext_sentinel) $(r "$b" broken_sentinel) $(r "$b" opt_sentinel) $(r "$b" ddi_sentinel) $(r "$b" usr_meta_list) $(r "$b" mount_usr)"
    [[ $v == "MISSING MISSING MISSING MISSING MISSING " ]] && pass "$f" "sysext class not merged at all (all-or-nothing, no /usr mount)" || fail "$f" "sysext class not merged at all" "$v"
    [[ $(r "$b" host_usr) == host-usr-sentinel ]] && pass "$f" "root's own /usr intact" || fail "$f" "root's own /usr intact" "$(r "$b" host_usr)"
    kmsg_has "$b" "extmerge-initrd: sysext merge failed, continuing without it: /sysroot/var/lib/extensions/broken/opt: Not a directory" &&
        pass "$f" "kernel log names the class, the file and the reason" || fail "$f" "kernel log names the class, file and reason" "$(r "$b" kmsg_extmerge)"
    [[ $(r "$b" run_marker) == MISSING ]] && pass "$f" "no sysroot-merged marker after a failed class" || fail "$f" "no sysroot-merged marker after a failed class" "$(r "$b" run_marker)"
    if grep -q 'erofs: (device dm-[0-9]*): mounted' "$W/boots/$b/dmesg.txt"; then
        check_no_devices "$f" "$b" "the verity DDI was mounted through dm-verity during planning (kernel log), then the class failed"
    else
        check_no_devices "$f" "$b" "the verity DDI was not mounted before the failure in this boot"
    fi
}
# Flow (7): the verity DDI with a wrong root hash.
check_badhash() {   # FLOW BOOT
    local f=$1 b=$2 v
    if [[ ! -s $W/boots/$b/report ]]; then
        fail "$f" "boot continued to the real root" "no report; console: $(tailof "$b")"
        return
    fi
    pass "$f" "boot continued to the real root's init"
    v=$(r "$b" confext_sentinel); [[ $v == "confext-sentinel testconf" ]] && pass "$f" "confext class still merged" || fail "$f" "confext class still merged" "$v"
    v="$(r "$b" sysext_sentinel) $(r "$b" opt_sentinel) $(r "$b" ddi_sentinel) $(r "$b" usr_meta_list) $(r "$b" opt_meta_list) [$(r "$b" mount_usr)$(r "$b" mount_opt)]"
    [[ $v == "MISSING MISSING MISSING MISSING MISSING []" ]] && pass "$f" "nothing of the sysext class mounted (no /usr, /opt overlay; directory sysext not merged either)" ||
        fail "$f" "nothing of the sysext class mounted" "$v"
    [[ $(r "$b" host_usr) == host-usr-sentinel ]] && pass "$f" "root's own /usr intact" || fail "$f" "root's own /usr intact" "$(r "$b" host_usr)"
    v=$(r "$b" kmsg_extmerge | tr '|' '\n' | grep -m1 'sysext merge failed')
    [[ $v == *"extmerge-initrd: sysext merge failed, continuing without it: /sysroot/var/lib/extensions/$DDI.raw: usr (dm-verity): "* &&
        $v == *"Input/output error"* ]] &&
        pass "$f" "kernel log names the class, the image, the step and the reason (EIO through dm-verity)" ||
        fail "$f" "kernel log names the class, the image, the step and the reason" "$(r "$b" kmsg_extmerge)"
    echo "  kernel log: $v"
    v=$(grep -m1 -E 'device-mapper: verity: .*(corrupted|verification failed)' "$W/boots/$b/dmesg.txt")
    [[ -n $v ]] && pass "$f" "kernel: dm-verity itself reported the mismatch (${v#*] })" ||
        fail "$f" "kernel: dm-verity reported the mismatch" "$(grep -m3 -i verity "$W/boots/$b/dmesg.txt" | tr '\n' '|')"
    [[ $(r "$b" run_marker) == MISSING ]] && pass "$f" "no sysroot-merged marker after a failed class" || fail "$f" "no sysroot-merged marker after a failed class" "$(r "$b" run_marker)"
    [[ $(r "$b" workspace_mounts) == 0 ]] && pass "$f" "no staging mounts left in /run/extmerge" || fail "$f" "no staging mounts left in /run/extmerge" "$(r "$b" workspace_mounts)"
    check_no_devices "$f" "$b" "the dm-verity device with the wrong root hash and its loop devices were removed"
}
check_disabled() {   # FLOW BOOT
    local f=$1 b=$2 v
    if [[ ! -s $W/boots/$b/report ]]; then
        fail "$f" "boot continued to the real root" "no report; console: $(tailof "$b")"
        return
    fi
    pass "$f" "boot continued to the real root's init"
    v="$(r "$b" confext_sentinel) $(r "$b" sysext_sentinel) $(r "$b" opt_sentinel) $(r "$b" etc_meta_list) $(r "$b" usr_meta_list)"
    [[ $v == "MISSING MISSING MISSING MISSING MISSING" ]] && pass "$f" "nothing merged" || fail "$f" "nothing merged" "$v"
    v="$(r "$b" mount_etc)$(r "$b" mount_usr)$(r "$b" mount_opt)"
    [[ -z $v ]] && pass "$f" "/etc, /usr, /opt are not mount points" || fail "$f" "/etc, /usr, /opt are not mount points" "$v"
    ! kmsg_has "$b" "merged " && pass "$f" "kernel log: no merge" || fail "$f" "kernel log: no merge" "$(r "$b" kmsg_extmerge)"
    check_no_devices "$f" "$b" "nothing opened"
}

# ------------------------------------------------------------ all boots, one queue
# TCG is CPU-bound: $JOBS boots at a time (default 2, the cores here). The timing boots
# (t-with-N: dracut+systemd with extmerge, t-without-N: the same initrd without it) are
# interleaved with the others so that each of them, too, ran next to one other boot;
# t-with-* are also flow (1).
NW=$((RUNS > 0 ? RUNS : 1))
specs=()
add_timing() {   # N
    (($1 <= NW)) && specs+=("t-with-$1 $W/initrd-sd.img $W/root.img $REPORT_REQ")
    (($1 <= RUNS)) && specs+=("t-without-$1 $W/initrd-sd0.img $W/root.img")
    return 0
}
add_timing 1
specs+=("f3-mkosi-style $W/initrd-mkosi.img $W/root.img $REPORT_REQ"
        "f8-require-systemd $W/initrd-sd.img $W/root-badhash.img extmerge.require=nosuch,$DDI")
add_timing 2
specs+=("f4-corrupt-systemd $W/initrd-sd.img $W/root-corrupt.img"
        "f7-badhash-systemd $W/initrd-sd.img $W/root-badhash.img"
        "f5-disabled-systemd $W/initrd-sd.img $W/root.img extmerge=0")
add_timing 3
specs+=("f4-fatal-systemd $W/initrd-sd.img $W/root-corrupt.img extmerge.fatal=1")
specs+=("f2-dracut-shell $W/initrd-sh.img $W/root.img $REPORT_REQ"
        "f4-fatal-shell $W/initrd-sh.img $W/root-corrupt.img extmerge.fatal=1"
        "f8-require-shell $W/initrd-sh.img $W/root-badhash.img extmerge.require=$DDI"
        "f8-require-mkosi $W/initrd-mkosi.img $W/root.img extmerge.require=nosuch")
for ((i = 4; i <= NW || i <= RUNS; i++)); do add_timing "$i"; done
specs+=("f5-disabled-shell $W/initrd-sh.img $W/root.img extmerge=0")
# (9) on the signed test kernel: the /.extra DDI on the real root in each flow, and not
# without the switch; on Debian's kernel (which does not trust the CA) and unsigned: a
# required /.extra extension refused stops the boot.
for b in f9-extra-systemd f9-extra-shell f9-extra-mkosi f9-noextra-systemd; do BOOT_KERNEL[$b]=$SKERNEL; done
specs+=("f9-extra-systemd $W/initrd-sd-signed.img $W/root.img $EXTRA_REQ"
        "f9-extra-shell $W/initrd-sh-signed.img $W/root.img $EXTRA_REQ"
        "f9-extra-mkosi $W/initrd-mkosi-signed.img $W/root.img $EXTRA_REQ"
        "f9-noextra-systemd $W/initrd-sd-signed.img $W/root.img $REPORT_REQ"
        "f9-untrusted-shell $W/initrd-sh-signed.img $W/root.img $EXTRA_REQ"
        "f9-unsigned-systemd $W/initrd-sd-unsigned.img $W/root.img $EXTRA_REQ")
say "${#specs[@]} boots, $JOBS at a time (TCG; about 15-30 s each on an idle machine, several times that under load)"
if [[ -n $ONLY ]]; then
    kept=()
    for sp in "${specs[@]}"; do [[ ${sp%% *} =~ $ONLY ]] && kept+=("$sp"); done
    specs=("${kept[@]}")
    say "--only $ONLY: ${#specs[@]} boots"
fi
run_boots "${specs[@]}"
say "boots done"

echo "(1) dracut + systemd: extmerge-initrd.service (boot t-with-1)"
check_merged f1 t-with-1
unit_ran f1 t-with-1
check_report f1 t-with-1
for ((i = 2; i <= NW; i++)); do
    b=t-with-$i
    kmsg_has $b "merged confext extensions testconf" && kmsg_has $b "merged sysext extensions $DDI,testsys" &&
        [[ $(r $b sysext_sentinel) == "sysext-sentinel testsys" ]] && pass f1 "$b: merged, sentinels visible" ||
        fail f1 "$b: merged, sentinels visible" "$(r $b kmsg_extmerge) $(tailof $b 2)"
done
echo "(2) dracut without systemd: pre-pivot hook"
check_merged f2 f2-dracut-shell
check_report f2 f2-dracut-shell
v=$(r f2-dracut-shell kmsg_systemd_lines)
[[ $v == 0 ]] && pass f2 "no systemd in this boot (shell flow; the hook ran the merge)" || fail f2 "no systemd in this boot" "$v systemd[1] lines"

echo "(3) mkosi-initrd-style initrd (assembled: dracut systemd initrd w/o extmerge + initrd-tree + preset, cpio)"
check_merged f3 f3-mkosi-style
unit_ran f3 f3-mkosi-style
check_report f3 f3-mkosi-style

echo "(4) corrupt sysext (selected extension whose opt is a regular file -> ENOTDIR, hard error for the sysext class)"
check_corrupt f4 f4-corrupt-systemd
unit_ran f4 f4-corrupt-systemd
echo "  kernel log: $(r f4-corrupt-systemd kmsg_extmerge | tr '|' '\n' | grep -m1 'merge failed')"
# extmerge.fatal=1, systemd flow: the program fails, so the unit fails, and its
# OnFailure=emergency.target stops the boot: the real root's init must NOT run.
b=f4-fatal-systemd
grep -qE "extmerge-initrd.service: (Main process exited, code=exited, status=1|Failed with result 'exit-code')|Failed to start extmerge-initrd.service" "$W/boots/$b/dmesg.txt" "$W/boots/$b/console.txt" 2>/dev/null &&
    pass f4-fatal-systemd "extmerge.fatal=1 (systemd flow): extmerge-initrd.service failed" ||
    fail f4-fatal-systemd "extmerge.fatal=1 (systemd flow): extmerge-initrd.service failed" "$(grep -m3 'extmerge-initrd.service' "$W/boots/$b/dmesg.txt" 2>/dev/null | tr '\n' '|')"
[[ ! -s $W/boots/$b/report ]] &&
    pass f4-fatal-systemd "extmerge.fatal=1 (systemd flow): the boot stops before the real root" ||
    fail f4-fatal-systemd "extmerge.fatal=1 (systemd flow): the boot stops before the real root" "the real root's init ran"
# extmerge.fatal=1, shell flow: the hook calls die -> dracut's emergency action
# (rd.shell=0 rd.emergency=reboot here): the real root's init must NOT run.
b=f4-fatal-shell
if [[ -s $W/boots/$b/report ]]; then
    why="the real root's init ran"
    grep -q 'extmerge-pre-pivot.sh: .*grep: command not found' "$W/boots/$b/console.txt" &&
        why+="; console: '$(grep -m1 'grep: command not found' "$W/boots/$b/console.txt")' (the hook needs grep; the module does not install it)"
    fail f4-fatal-shell "extmerge.fatal=1 (shell flow) stops the boot at the failed merge" "$why"
elif grep -q 'FATAL: extmerge-initrd' "$W/boots/$b/console.txt" "$W/boots/$b/dmesg.txt"; then
    pass f4-fatal-shell "extmerge.fatal=1 (shell flow): the hook dies, the boot stops before the real root"
else
    fail f4-fatal-shell "extmerge.fatal=1 (shell flow): the hook dies" "rc $(cat "$W/boots/$b/rc"), console: $(tailof $b)"
fi

echo "(7) verity DDI with a wrong root hash in $DDI.usrhash (dm-verity refuses to read it)"
check_badhash f7 f7-badhash-systemd
unit_ran f7 f7-badhash-systemd
# Its report: the class failed, the DDI refused by verity; no requirement unmet (the
# root's Require=testconf is merged), so the boot went on.
v=$(jqr f7-badhash-systemd "[.ok, (.required[] | .name + \":\" + (.met|tostring)), (.classes[] | .class + \":\" + .result), (.classes[].entries[] | select(.name == \"$DDI\") | .verdict, .verity, .signature)] | map(tostring) | join(\" \")")
[[ $v == "true testconf:true confext:merged sysext:failed refused failed unknown" ]] &&
    pass f7 "report: ok (Require=testconf met), sysext failed, $DDI refused, verity failed" ||
    fail f7 "report: ok, sysext failed, $DDI refused with verity failed" "$v"
v=$(jqr f7-badhash-systemd ".classes[].entries[] | select(.name == \"$DDI\") | .reason")
[[ $v == *"$DDI.raw"*"Input/output error"* ]] && pass f7 "report: $DDI's reason names the image and the error" ||
    fail f7 "report: $DDI's reason names the image and the error" "$v"

echo "(8) required extensions that are not merged stop the boot, naming the extension and the reason"
check_require_stop f8-systemd f8-require-systemd systemd "nosuch is not merged, stopping the boot: not found" \
    "$DDI is not merged, stopping the boot: sysext /var/lib/extensions/$DDI.raw refused: "
grep -q "required extension $DDI .*Input/output error" "$W/boots/f8-require-systemd/console.txt" &&
    pass f8-systemd "console: the reason for $DDI is dm-verity's EIO" || fail f8-systemd "console: the reason for $DDI is dm-verity's EIO" "$(grep -m1 "required extension $DDI" "$W/boots/f8-require-systemd/console.txt")"
check_require_stop f8-shell f8-require-shell shell "$DDI is not merged, stopping the boot: sysext /var/lib/extensions/$DDI.raw refused: "
check_require_stop f8-mkosi f8-require-mkosi systemd "nosuch is not merged, stopping the boot: not found in the search directories"

echo "(9) extensions from the UKI and the ESP (/.extra in the initrd) on the real root: extmerge.extra=sysroot"
check_extra() {   # FLOW BOOT
    local f=$1 b=$2 v
    if [[ ! -s $W/boots/$b/report ]]; then
        fail "$f" "real root reached its init and reported" "no report; rc $(cat "$W/boots/$b/rc"), console: $(tailof "$b")"
        return
    fi
    pass "$f" "real root's init ran and reported (kernel $(r "$b" cmdline | grep -o 'BOOT_IMAGE=[^ ]*' || echo "$(basename "${BOOT_KERNEL[$b]:-$KERNEL}")"))"
    same "$f" "the /.extra DDI's file in /usr, first thing after switch-root" "ddi-sentinel uki" "$(r "$b" extra_sentinel)"
    same "$f" "read again with the page cache dropped (from the emptied initramfs's file, through loop and dm-verity)" "ddi-sentinel uki" "$(r "$b" extra_sentinel_uncached)"
    v=$(r "$b" loops)
    [[ $v == *"uki.raw"* ]] && pass "$f" "loop devices over the initramfs's uki.raw ($(grep -o '[^ ]*uki.raw[^@]*' <<<"$v" | sort -u | tr '\n' ' '))" ||
        fail "$f" "loop devices over uki.raw" "$v"
    same "$f" "the root's own extensions merged too" "sysext-sentinel testsys confext-sentinel testconf ddi-sentinel $DDI" \
        "$(r "$b" sysext_sentinel) $(r "$b" confext_sentinel) $(r "$b" ddi_sentinel)"
    same "$f" "/usr metadata lists $DDI testsys uki" "$DDI testsys uki" "$(r "$b" usr_meta_list)"
    same "$f" "report: uki from /.extra/sysext/uki.raw, merged, verity and signature verified" \
        "/.extra/sysext/uki.raw:raw:merged:verified:verified" \
        "$(jqr "$b" '.classes[].entries[] | select(.name == "uki") | "\(.path):\(.kind):\(.verdict):\(.verity):\(.signature)"')"
    same "$f" "report: required uki met, the switch in force" "true extmerge.extra=sysroot" \
        "$(jqr "$b" '[(.required[] | select(.name == "uki") | .met), (.cmdline[] | select(startswith("extmerge.extra")))] | map(tostring) | join(" ")')"
}
check_extra f9-systemd f9-extra-systemd
unit_ran f9-systemd f9-extra-systemd
check_extra f9-shell f9-extra-shell
check_extra f9-mkosi f9-extra-mkosi
unit_ran f9-mkosi f9-extra-mkosi
b=f9-noextra-systemd
if [[ -s $W/boots/$b/report ]]; then
    same f9-noextra "without the switch: no /.extra DDI on the real root" "MISSING" "$(r $b extra_sentinel)"
    same f9-noextra "without the switch: the report has no uki entry, the root's own merged" "0 sysext-sentinel testsys" \
        "$(jqr $b '[.classes[].entries[] | select(.name == "uki")] | length') $(r $b sysext_sentinel)"
    v=$(r $b loops)
    [[ $v != *uki.raw* ]] && pass f9-noextra "without the switch: no loop device over uki.raw" || fail f9-noextra "no loop device over uki.raw" "$v"
else
    fail f9-noextra "real root reached its init and reported" "no report; console: $(tailof $b)"
fi
check_require_stop f9-untrusted f9-untrusted-shell shell "uki is not merged, stopping the boot: sysext /.extra/sysext/uki.raw refused: "
grep -q "required extension uki .*not in the kernel's trusted keyrings" "$W/boots/f9-untrusted-shell/console.txt" &&
    pass f9-untrusted "console: Debian's kernel does not trust the test CA (ENOKEY)" ||
    fail f9-untrusted "console: the reason is the untrusted signer" "$(grep -m1 'required extension uki' "$W/boots/f9-untrusted-shell/console.txt")"
check_require_stop f9-unsigned f9-unsigned-systemd systemd "uki is not merged, stopping the boot: sysext /.extra/sysext/uki.raw refused: "
grep -q "required extension uki .*image policy 'root=signed+absent:usr=signed+absent' forbids" "$W/boots/f9-unsigned-systemd/console.txt" &&
    pass f9-unsigned "console: the strict /.extra image policy refuses the unsigned DDI" ||
    fail f9-unsigned "console: the strict /.extra policy is the reason" "$(grep -m1 'required extension uki' "$W/boots/f9-unsigned-systemd/console.txt")"

echo "(5) extmerge=0"
check_disabled f5 f5-disabled-systemd
v=$(r f5-disabled-systemd kmsg_extmerge)
[[ -s $W/boots/f5-disabled-systemd/report && $v != *"Starting extmerge-initrd.service"* ]] &&
    pass f5 "systemd flow: unit skipped (ConditionKernelCommandLine=!extmerge=0)" || fail f5 "systemd flow: unit skipped by its condition" "$v"
check_disabled f5-shell f5-disabled-shell
kmsg_has f5-disabled-shell "disabled by extmerge=0" && pass f5-shell "kernel log: 'disabled by extmerge=0'" ||
    fail f5-shell "kernel log: 'disabled by extmerge=0'" "$(r f5-disabled-shell kmsg_extmerge)"

# ============================================================ 6. timing
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
row() {   # LABEL VALUES...
    local l=$1; shift
    printf '  %-50s %-24s %s\n' "$l" "$*" "$(printf '%s\n' "$@" | grep -E '^[0-9.]+$' | median)"
}
# First kernel-log timestamp (s since kernel start) of a line containing a fixed string.
ts() { awk -v p="$2" 'index($0, p) { sub(/^\[ */, ""); sub(/\].*/, ""); print; exit }' "$W/boots/$1/dmesg.txt" 2>/dev/null; }
diff_s() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "") print "-"; else printf "%.1f", b - a }'; }
if ((RUNS > 0)); then
    declare -A T=()
    for i in $(seq 1 "$RUNS"); do
        for v in with without; do
            b=t-$v-$i
            [[ -s $W/boots/$b/report ]] || fail timing "boot $b reported" "console: $(tailof "$b")"
            t_init=$(ts "$b" 'Run /init as init process')
            T[$v.wall]+="$(cat "$W/boots/$b/t_report" 2>/dev/null || echo -) "
            T[$v.up]+="$(r "$b" init_uptime | grep . || echo -) "
            T[$v.kinit]+="$(diff_s 0 "$t_init") "
            T[$v.dev]+="$(diff_s "$t_init" "$(ts "$b" 'Found device dev-vda.device')") "
            T[$v.sw]+="$(diff_s "$t_init" "$(ts "$b" 'Switching root')") "
        done
        T[modp]+="$(diff_s "$(ts "t-with-$i" 'Starting modprobe@dm_mod.service')" "$(ts "t-with-$i" 'Finished modprobe@overlay.service')") "
        T[unit]+="$(diff_s "$(ts "t-with-$i" 'Starting extmerge-initrd.service')" "$(ts "t-with-$i" 'Finished extmerge-initrd.service')") "
        T[us]+="$(r "t-with-$i" kmsg_extmerge | grep -oE 'extmerge-initrd: done in [0-9]+' | grep -oE '[0-9]+$' | head -n1 | grep . || echo -) "
    done
    echo
    echo "Boot timing: dracut systemd flow, Linux $KVER, TCG, $RUNS boots per variant, each next to one other boot"
    echo "(guest times from its kernel log; 'wall' = host clock from qemu start to the real init's first line):"
    printf '  %-50s %-24s %s\n' "" "runs" "median"
    # shellcheck disable=SC2086
    {
        row "WITH extmerge:  qemu start -> real init (wall, s)" ${T[with.wall]}
        row "without:        qemu start -> real init (wall, s)" ${T[without.wall]}
        row "WITH extmerge:  kernel start -> real init (s)" ${T[with.up]}
        row "without:        kernel start -> real init (s)" ${T[without.up]}
        row "WITH extmerge:  kernel start -> initrd /init (s)" ${T[with.kinit]}
        row "without:        kernel start -> initrd /init (s)" ${T[without.kinit]}
        row "WITH extmerge:  initrd /init -> /dev/vda found (s)" ${T[with.dev]}
        row "without:        initrd /init -> /dev/vda found (s)" ${T[without.dev]}
        row "WITH extmerge:  initrd /init -> Switching root (s)" ${T[with.sw]}
        row "without:        initrd /init -> Switching root (s)" ${T[without.sw]}
        row "modprobe@dm_mod start -> modprobe@overlay done (s)" ${T[modp]}
        row "extmerge-initrd.service Starting -> Finished (s)" ${T[unit]}
        row "extmerge-initrd own run time ('done in', µs)" ${T[us]}
    }
fi

echo
if ((FAIL)); then
    echo "failed checks in: $(printf '%s\n' "${FAILED_FLOWS[@]}" | sort -u | tr '\n' ' ')"
    for d in "$W"/boots/*/; do
        n=$(basename "$d")
        [[ -s $d/report || $n == f4-fatal-* || $n == f8-* ]] && continue
        echo "--- $n: no report (rc $(cat "$d/rc" 2>/dev/null)), last console lines:"
        tail -n 15 "$d/console.txt" 2>/dev/null | sed 's/^/    /'
    done
fi
say "done (whole run)"
echo "$PASS passed, $FAIL failed"
((FAIL == 0))
