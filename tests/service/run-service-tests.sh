#!/bin/bash
# Per-service confexts with systemd as PID 1: boots a Debian 12 root (systemd 252) and a
# Debian unstable root (the newest systemd, 262+), both made by mmdebstrap through
# tests/diff/sid-root.sh and cached under target/, with
# extmerge and extmerge-generator installed, in qemu (TCG), and runs
# tests/service/sd-test.sh there as a oneshot unit: a real service (web.service, the
# script tests/service/websvc) with web.service.confext.d/web.v/ in /etc/systemd/system
# sees its confext at start while the host's /etc does not; a newer version and
# `systemctl reload` make the service's own reload handler see it (the refresh ran
# first); a broken version fails the reload visibly and leaves the service's /etc as it
# was; after five reloads exactly one overlay is on the service's /etc; stopping leaves
# nothing behind. Also the reload round trip against the same service without
# extensions (median of 5). On the newest systemd the same checks show that its own
# extension handling (ExtensionImages=, refresh on reload) and ours do not meet: one
# overlay on the service's /etc after every reload. Then, in the same boot,
# tests/service/sd-actions.sh: the service manager actions of extension-release
# (EXTENSION_RELOAD_MANAGER=, EXTENSION_RESTART_UNITS=, EXTENSION_RELOAD_OR_RESTART_UNITS=)
# after merge, refresh and unmerge, over the manager's D-Bus API.
#
# Usage (as root):  tests/service/run-service-tests.sh [--keep] [--timeout SECS]
# Ends with "N passed, M failed"; exits non-zero on failure. Without its prerequisites:
# SKIP and 0, or a failure when CI is set. Nothing outside a temp dir and target/ is
# written: the root image is made with mkfs.ext4 -d and opened with snapshot=on.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROJ=$(cd "$HERE/../.." && pwd)
KEEP=0 TIMEOUT=600
while (($#)); do
    case $1 in
        --keep) KEEP=1; shift ;;
        --timeout) TIMEOUT=${2:?}; shift 2 ;;
        -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
say() { echo "[service-tests] $*"; }
skip() {
    if [[ -n ${CI:-} ]]; then echo "FAIL: $* (CI is set: the service tests must run)"; echo "0 passed, 1 failed"; exit 1; fi
    echo "SKIP: $*"; exit 0
}
fatal() { echo "ERROR: $*" >&2; echo "0 passed, 1 failed"; exit 1; }

[[ $(id -u) == 0 ]] || skip "needs root (mmdebstrap, the kernel in /boot, dracut)"
apt_install() {
    command -v apt-get >/dev/null || return 1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends --no-upgrade \
        -o DPkg::Lock::Timeout=300 "$@" >/dev/null 2>&1
}
command -v mmdebstrap >/dev/null || apt_install mmdebstrap || true
[[ -f /usr/lib/dracut/dracut-init.sh ]] || apt_install dracut-core || true
command -v mkfs.ext4 >/dev/null || apt_install e2fsprogs || true
QEMU=$(command -v qemu-system-x86_64 || true)
KERNEL=$(find /boot -maxdepth 1 -name 'vmlinuz-*-cloud-amd64' 2>/dev/null | sort -V | tail -n1)
KVER=${KERNEL##*/vmlinuz-}
missing=()
[[ -n $QEMU ]] || missing+=(qemu-system-x86_64)
[[ -n $KERNEL && -r $KERNEL && -f /lib/modules/$KVER/modules.dep ]] || missing+=("/boot/vmlinuz-*-cloud-amd64 and its modules")
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
command -v dracut >/dev/null || missing+=(dracut-core)
command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
((${#missing[@]} == 0)) || skip "missing: ${missing[*]}"

# ------------------------------------------------------------------ common parts
say "building extmerge (static)"
(cd "$PROJ" && RUSTFLAGS='-C target-feature=+crt-static' cargo build -q --profile initrd \
    --target x86_64-unknown-linux-gnu --bin extmerge) || fatal "cargo build failed"
BIN=$PROJ/target/x86_64-unknown-linux-gnu/initrd/extmerge

W=$(mktemp -d "${TMPDIR:-/var/tmp}/extmerge-service.XXXXXX")
[[ -n $W && -d $W ]] || fatal "mktemp failed"
cleanup() { if ((KEEP)); then echo "kept: $W"; else rm -rf "$W"; fi; }
trap cleanup EXIT

say "initrd (dracut, systemd flow, no extmerge module)"
cp -a /usr/lib/dracut "$W/dracut"
mkdir -p "$W/dracut.conf.d" "$W/dracut-tmp"
dracutbasedir="$W/dracut" dracut --conf /dev/null --confdir "$W/dracut.conf.d" --tmpdir "$W/dracut-tmp" \
    --no-hostonly --no-hostonly-cmdline --no-compress --nostrip --force --no-early-microcode \
    --kver "$KVER" -m "systemd systemd-initrd dracut-systemd base rootfs-block fs-lib udev-rules" \
    --add-drivers "virtio_pci virtio_blk overlay" "$W/initrd.img" >"$W/dracut.log" 2>&1 ||
    fatal "dracut: $(tail -n 20 "$W/dracut.log")"

PASS=0 FAIL=0

# unit_file NAME DESCRIPTION EXECSTART: a service whose reload is SIGHUP (the shell's
# kill: Debian unstable's minimal root has no /bin/kill).
unit_file() {
    printf '[Unit]\nDescription=%s\n[Service]\nExecStart=%s\nExecReload=/bin/sh -c '"'"'kill -HUP $MAINPID'"'"'\n' "$2" "$3"
}

# variant NAME ROOT: a copy of ROOT (a Debian tree with systemd) with the test's files,
# made into an image, booted; its console's verdicts counted.
variant() {
    local name=$1 root=$2 d R V u rc start verdict check rest n=0
    d=$W/$name
    R=$d/rootfs
    # Everything below writes into $R: never anywhere else.
    [[ $R == "$W"/*/rootfs ]] || fatal "bad root path '$R'"
    mkdir -p "$d"
    cp -a "$root" "$R"
    install -Dm755 "$BIN" "$R/usr/local/bin/extmerge"
    # The generator link, as ./install.sh makes it.
    mkdir -p "$R/usr/local/lib/systemd/system-generators"
    ln -sfn /usr/local/bin/extmerge "$R/usr/local/lib/systemd/system-generators/extmerge-generator"
    install -Dm755 "$HERE/websvc" "$R/usr/local/bin/websvc"
    install -Dm755 "$HERE/sd-test.sh" "$R/usr/local/bin/sd-test.sh"
    install -Dm755 "$HERE/sd-actions.sh" "$R/usr/local/bin/sd-actions.sh"
    # Not a first boot (no machine-id setup, no preset-all): the first-boot case is its own.
    echo 3b2f8c6a1d9e4f5b8a7c6d5e4f3a2b1c >"$R/etc/machine-id"
    unit_file web.service "extmerge test service with its own confexts" /usr/local/bin/websvc \
        >"$R/etc/systemd/system/web.service"
    unit_file plain.service "the same service without extensions" "/usr/local/bin/websvc /run/plain.log" \
        >"$R/etc/systemd/system/plain.service"
    V=$R/etc/systemd/system/web.service.confext.d/web.v/web_1
    mkdir -p "$V/etc/extension-release.d"
    # The root's own ID and VERSION_ID (Debian unstable has no VERSION_ID: ID alone).
    (
        . "$R/usr/lib/os-release"
        echo "ID=$ID"
        [[ -z ${VERSION_ID:-} ]] || echo "VERSION_ID=$VERSION_ID"
    ) >"$V/etc/extension-release.d/extension-release.web"
    echo v1 >"$V/etc/web.conf"
    printf '[Unit]\nDescription=extmerge per-service test driver\nAfter=basic.target\n[Service]\nType=oneshot\nExecStart=/usr/local/bin/sd-test.sh\n' \
        >"$R/etc/systemd/system/sd-test.service"
    mkdir -p "$R/etc/systemd/system/multi-user.target.wants"
    ln -sfn /etc/systemd/system/sd-test.service "$R/etc/systemd/system/multi-user.target.wants/sd-test.service"
    # Units this test does not need, and slow under TCG.
    for u in systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; do
        ln -sfn /dev/null "$R/etc/systemd/system/$u"
    done
    mkfs.ext4 -q -F -L sdroot -d "$R" "$d/root.img" 1G >"$d/mkfs.log" 2>&1 ||
        fatal "mkfs.ext4: $(cat "$d/mkfs.log")"
    rm -rf "$R"

    say "$name: booting (TCG; timeout $TIMEOUT s)"
    local append="root=/dev/vda rw console=ttyS0 panic=-1 rd.driver.pre=overlay rd.shell=0 rd.emergency=reboot"
    append+=" loglevel=4 systemd.show_status=0 mitigations=off fsck.mode=skip init=/lib/systemd/systemd"
    start=$SECONDS
    timeout -k 5 "$TIMEOUT" "$QEMU" -nodefaults -no-user-config -display none -monitor none \
        -no-reboot -accel tcg -cpu qemu64 -m 768M -smp 1 \
        -kernel "$KERNEL" -initrd "$W/initrd.img" -append "$append" \
        -serial "file:$d/console.log" \
        -drive "file=$d/root.img,format=raw,if=none,id=root,snapshot=on" \
        -device virtio-blk-pci,drive=root </dev/null >"$d/qemu.out" 2>&1
    rc=$?
    tr -d '\r' <"$d/console.log" >"$d/console.txt"
    rm -f "$d/root.img"
    say "$name: qemu exited with $rc after $((SECONDS - start)) s"
    while read -r _ verdict check rest; do
        case $verdict in
            PASS) PASS=$((PASS + 1)) n=$((n + 1)); echo "  PASS  $name: $check" ;;
            FAIL) FAIL=$((FAIL + 1)); echo "  FAIL  $name: $check $rest" ;;
        esac
    done < <(grep '^EXTMERGE-SD \(PASS\|FAIL\) ' "$d/console.txt")
    grep '^EXTMERGE-SD-\(BOOT\|BEGIN\|JOURNAL\|DROPIN\|TIME\)' "$d/console.txt" | sed "s/^/  $name: /"
    if ! grep -q '^EXTMERGE-SD-DONE' "$d/console.txt"; then
        FAIL=$((FAIL + 1))
        echo "  FAIL  $name: the test driver did not finish; console tail:"
        tail -n 30 "$d/console.txt" | sed 's/^/    /'
    fi
    # sd-test.sh's checks (29) and then sd-actions.sh's (24).
    ((n >= 50)) || { FAIL=$((FAIL + 1)); echo "  FAIL  $name: only $n checks passed (expected at least 50)"; }
}

# ------------------------------------------------------------------ the roots
say "Debian 12 root with systemd 252 (cached under target/bookworm-root)"
ROOT12=$(SID_ROOT=$PROJ/target/bookworm-root SID_SUITE=bookworm SID_PACKAGES=systemd-sysv,procps \
    "$PROJ/tests/diff/sid-root.sh" | tail -n1) || fatal "building the Debian 12 root failed"
[[ -x $ROOT12/lib/systemd/systemd ]] || fatal "'$ROOT12' has no systemd"
[[ ${SERVICE_VARIANTS:-systemd252} == *systemd252* ]] && variant systemd252 "$ROOT12"

say "Debian unstable root with the newest systemd (target/sid-root, shared with the 262 differential test)"
ROOTSID=$("$PROJ/tests/diff/sid-root.sh" | tail -n1) || fatal "building the Debian unstable root failed"
[[ -x $ROOTSID/lib/systemd/systemd ]] || fatal "'$ROOTSID' has no systemd"
[[ ${SERVICE_VARIANTS:-systemd-newest} == *systemd-newest* ]] && variant systemd-newest "$ROOTSID"

echo "$PASS passed, $FAIL failed"
((FAIL == 0))
