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
# extensions, in a namespace of its own without extensions, and with one more reload
# command that does nothing, and on the newest systemd with its own
# ExtensionDirectories= (medians of 5, interleaved). On the newest systemd the same checks show that its own
# extension handling (ExtensionImages=, refresh on reload) and ours do not meet: one
# overlay on the service's /etc after every reload. Then, in the same boot,
# tests/service/sd-actions.sh: the service manager actions of extension-release
# (EXTENSION_RELOAD_MANAGER=, EXTENSION_RESTART_UNITS=, EXTENSION_RELOAD_OR_RESTART_UNITS=)
# after merge, refresh and unmerge, over the manager's D-Bus API.
# Last, a first boot (firstboot252, Debian 12): an initrd with extmerge's dracut module
# merges a confext onto the real root's /etc before switch-root, on a root that says
# "uninitialized" in /etc/machine-id and Mutable=yes in /etc/systemd/confext.conf; the
# checks (tests/service/fb-check.sh, run by a unit only preset-all enables) see the
# machine-id set up and kept, the preset links written, no read-only /etc errors, and the
# boot after it keeps all of that. SERVICE_VARIANTS (default: all three) picks variants.
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
say "building extmerge and extmerge-initrd (static)"
(cd "$PROJ" && RUSTFLAGS='-C target-feature=+crt-static' cargo build -q --profile initrd \
    --target x86_64-unknown-linux-gnu --bin extmerge --bin extmerge-initrd) || fatal "cargo build failed"
BIN=$PROJ/target/x86_64-unknown-linux-gnu/initrd/extmerge
INITRD_BIN=$PROJ/target/x86_64-unknown-linux-gnu/initrd/extmerge-initrd

W=$(mktemp -d "${TMPDIR:-/var/tmp}/extmerge-service.XXXXXX")
[[ -n $W && -d $W ]] || fatal "mktemp failed"
cleanup() { if ((KEEP)); then echo "kept: $W"; else rm -rf "$W"; fi; }
trap cleanup EXIT

say "initrds (dracut, systemd flow: without the extmerge module, and with it for the first boot)"
# The project's install.sh into a DESTDIR, and a private dracut with its module (as
# tests/boot/run-boot-tests.sh does it).
DEST=$W/destdir
DESTDIR=$DEST PREFIX=/usr sh "$PROJ/initrd-hooks/install.sh" "$INITRD_BIN" >"$W/install.log" 2>&1 ||
    fatal "initrd-hooks/install.sh failed: $(cat "$W/install.log")"
cp -a /usr/lib/dracut "$W/dracut"
cp -a "$DEST/usr/lib/dracut/modules.d/90extmerge" "$W/dracut/modules.d/"
mkdir -p "$W/dracut.conf.d" "$W/dracut-tmp"
dracut_build() { # OUT MODULES
    DRACUT_PATH="$DEST/usr/bin /usr/sbin /usr/bin /sbin /bin" dracutbasedir="$W/dracut" \
        dracut --conf /dev/null --confdir "$W/dracut.conf.d" --tmpdir "$W/dracut-tmp" \
        --no-hostonly --no-hostonly-cmdline --no-compress --nostrip --force --no-early-microcode \
        --kver "$KVER" -m "$2" --add-drivers "virtio_pci virtio_blk overlay" "$1" >"$1.log" 2>&1 ||
        fatal "dracut: $(tail -n 20 "$1.log")"
}
SD_MODS="systemd systemd-initrd dracut-systemd base rootfs-block fs-lib udev-rules"
dracut_build "$W/initrd.img" "$SD_MODS"
dracut_build "$W/initrd-extmerge.img" "$SD_MODS extmerge"

PASS=0 FAIL=0

# unit_file NAME DESCRIPTION EXECSTART: a service whose reload is SIGHUP (the shell's
# kill: Debian unstable's minimal root has no /bin/kill).
unit_file() {
    printf '[Unit]\nDescription=%s\n[Service]\nExecStart=%s\nExecReload=/bin/sh -c '"'"'kill -HUP $MAINPID'"'"'\n' "$2" "$3"
}

# boot NAME DIR INITRD DRIVE-OPTS: boots DIR/root.img once (TCG), keeps the console in
# DIR/console-NAME.txt, counts its EXTMERGE-SD verdicts (BOOT_PASSED: this boot's
# passes) and fails when the driver in the guest did not say it finished.
boot() {
    local name=$1 d=$2 initrd=$3 opts=$4 rc start verdict check rest
    local append="root=/dev/vda rw console=ttyS0 panic=-1 rd.driver.pre=overlay rd.shell=0 rd.emergency=reboot"
    append+=" loglevel=4 systemd.show_status=0 mitigations=off fsck.mode=skip init=/lib/systemd/systemd"
    say "$name: booting (TCG; timeout $TIMEOUT s)"
    start=$SECONDS
    timeout -k 5 "$TIMEOUT" "$QEMU" -nodefaults -no-user-config -display none -monitor none \
        -no-reboot -accel tcg -cpu qemu64 -m 768M -smp 1 \
        -kernel "$KERNEL" -initrd "$initrd" -append "$append" \
        -serial "file:$d/console.log" \
        -drive "file=$d/root.img,format=raw,if=none,id=root,$opts" \
        -device virtio-blk-pci,drive=root </dev/null >"$d/qemu.out" 2>&1
    rc=$?
    tr -d '\r' <"$d/console.log" >"$d/console-$name.txt"
    say "$name: qemu exited with $rc after $((SECONDS - start)) s"
    BOOT_PASSED=0
    while read -r _ verdict check rest; do
        case $verdict in
            PASS) PASS=$((PASS + 1)) BOOT_PASSED=$((BOOT_PASSED + 1)); echo "  PASS  $name: $check" ;;
            FAIL) FAIL=$((FAIL + 1)); echo "  FAIL  $name: $check $rest" ;;
        esac
    done < <(grep '^EXTMERGE-SD \(PASS\|FAIL\) ' "$d/console-$name.txt")
    grep '^EXTMERGE-SD-\(BOOT\|BEGIN\|JOURNAL\|DROPIN\|TIME\)' "$d/console-$name.txt" | sed "s/^/  $name: /"
    if ! grep -q '^EXTMERGE-SD-DONE' "$d/console-$name.txt"; then
        FAIL=$((FAIL + 1))
        echo "  FAIL  $name: the test driver did not finish; console tail:"
        tail -n 30 "$d/console-$name.txt" | sed 's/^/    /'
    fi
}

# new_root NAME ROOT: sets d (the variant's directory) and R (a copy of ROOT, a Debian
# tree with systemd, with extmerge, the guest scripts' library and the slow units masked);
# everything the variant adds is written into $R, never anywhere else.
new_root() {
    d=$W/$1
    R=$d/rootfs
    [[ $R == "$W"/*/rootfs ]] || fatal "bad root path '$R'"
    mkdir -p "$d"
    cp -a "$2" "$R"
    install -Dm755 "$BIN" "$R/usr/local/bin/extmerge"
    install -Dm644 "$HERE/guest-lib.sh" "$R/usr/local/lib/extmerge-tests/guest-lib.sh"
    # Units these tests do not need, and slow under TCG.
    mkdir -p "$R/etc/systemd/system/multi-user.target.wants"
    for u in serial-getty@ttyS0.service systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; do
        ln -sfn /dev/null "$R/etc/systemd/system/$u"
    done
}

# release_of R NAME DIR: DIR/etc/extension-release.d/extension-release.NAME with R's own
# ID and VERSION_ID (Debian unstable has no VERSION_ID: ID alone).
release_of() {
    mkdir -p "$3/etc/extension-release.d"
    (
        . "$1/usr/lib/os-release"
        echo "ID=$ID"
        [[ -z ${VERSION_ID:-} ]] || echo "VERSION_ID=$VERSION_ID"
    ) >"$3/etc/extension-release.d/extension-release.$2"
}

# make_image: $R into $d/root.img (ext4), then $R goes.
make_image() {
    mkfs.ext4 -q -F -L sdroot -d "$R" "$d/root.img" 1G >"$d/mkfs.log" 2>&1 ||
        fatal "mkfs.ext4: $(cat "$d/mkfs.log")"
    rm -rf "$R"
}

# variant NAME ROOT: a copy of ROOT (a Debian tree with systemd) with the test's files,
# made into an image, booted; its console's verdicts counted.
variant() {
    local name=$1 d R V n
    new_root "$name" "$2"
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
    { unit_file floor.service "the same with one more reload command, which does nothing" \
        "/usr/local/bin/websvc /run/floor.log"; echo "ExecReload=+/bin/true"; } >"$R/etc/systemd/system/floor.service"
    # The same with its own mount namespace and no extensions: every command of it gets
    # a namespace built, as web.service's do for BindReadOnlyPaths=.
    { unit_file bound.service "the same in a mount namespace of its own, without extensions" \
        "/usr/local/bin/websvc /run/bound.log"; echo "BindReadOnlyPaths=/etc"; } >"$R/etc/systemd/system/bound.service"
    V=$R/etc/systemd/system/web.service.confext.d/web.v/web_1
    release_of "$R" web "$V"
    echo v1 >"$V/etc/web.conf"
    # The same confext for a service with ProtectSystem=strict (read-only /run).
    { unit_file strict.service "the same with ProtectSystem=strict" "/usr/local/bin/websvc /run/strict/websvc.log"
        printf 'ProtectSystem=strict\nRuntimeDirectory=strict\n'; } >"$R/etc/systemd/system/strict.service"
    mkdir -p "$R/etc/systemd/system/strict.service.confext.d/web.v"
    cp -a "$V" "$R/etc/systemd/system/strict.service.confext.d/web.v/"
    if [[ $name == systemd-newest ]]; then
        # systemd's own per-service confexts (ExtensionDirectories= with a .v/ directory,
        # refreshed by PID 1 on reload since 258), timed beside ours.
        { unit_file native.service "the same with systemd's own ExtensionDirectories=" \
            "/usr/local/bin/websvc /run/native.log"; echo "ExtensionDirectories=/srv/native/web.v"; } \
            >"$R/etc/systemd/system/native.service"
        release_of "$R" web "$R/srv/native/web.v/web_1"
        echo v1 >"$R/srv/native/web.v/web_1/etc/web.conf"
    fi
    printf '[Unit]\nDescription=extmerge per-service test driver\nAfter=basic.target\n[Service]\nType=oneshot\nExecStart=/usr/local/bin/sd-test.sh\n' \
        >"$R/etc/systemd/system/sd-test.service"
    ln -sfn /etc/systemd/system/sd-test.service "$R/etc/systemd/system/multi-user.target.wants/sd-test.service"
    make_image
    boot "$name" "$d" "$W/initrd.img" snapshot=on
    n=$BOOT_PASSED
    rm -f "$d/root.img"
    # sd-test.sh's checks (39; 42 with the newest systemd) and then sd-actions.sh's (24).
    ((n >= 50)) || { FAIL=$((FAIL + 1)); echo "  FAIL  $name: only $n checks passed (expected at least 50)"; }
}

# firstboot NAME ROOT: the first boot of a systemd root whose /etc gets a confext from
# extmerge-initrd before switch-root, then the boot after it, on one image (no
# snapshot: the second boot sees what the first one wrote). The root is set up as an
# image builder would for a confext on /etc: /etc/machine-id says "uninitialized" (first
# boot), confext.conf says Mutable=yes (the writes systemd makes to /etc on a first
# boot, machine-id and preset links, go to /var/lib/extensions.mutable/etc), and a unit
# that only preset-all enables runs the checks (tests/service/fb-check.sh).
firstboot() {
    local name=$1 d R C first second
    new_root "$name" "$2"
    install -Dm755 "$HERE/fb-check.sh" "$R/usr/local/bin/fb-check.sh"
    echo uninitialized >"$R/etc/machine-id"
    printf '[ConfExt]\nMutable=yes\n' >"$R/etc/systemd/confext.conf"
    C=$R/var/lib/confexts/fbconf
    release_of "$R" fbconf "$C"
    echo "from the confext" >"$C/etc/fbconf.conf"
    printf '[Unit]\nDescription=extmerge first-boot checks\nAfter=basic.target\n[Service]\nType=oneshot\nExecStart=/usr/local/bin/fb-check.sh\n[Install]\nWantedBy=multi-user.target\n' \
        >"$R/usr/lib/systemd/system/fb-check.service"
    printf 'enable fb-check.service\n' >"$R/usr/lib/systemd/system-preset/00-extmerge-fb.preset"
    printf '[Unit]\nDescription=runs on the first boot only\nConditionFirstBoot=yes\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n' \
        >"$R/usr/lib/systemd/system/fb-firstboot.service"
    ln -sfn /usr/lib/systemd/system/fb-firstboot.service "$R/etc/systemd/system/multi-user.target.wants/fb-firstboot.service"
    make_image
    boot "$name-1" "$d" "$W/initrd-extmerge.img" cache=unsafe
    boot "$name-2" "$d" "$W/initrd-extmerge.img" cache=unsafe
    rm -f "$d/root.img"
    fact() { sed -n "s/^EXTMERGE-FB $2=//p" "$d/console-$name-$1.txt" | tail -n1; }
    result() { # CHECK CONDITION DETAIL
        if eval "$2"; then PASS=$((PASS + 1)); echo "  PASS  $name: $1"; else FAIL=$((FAIL + 1)); echo "  FAIL  $name: $1 ($3)"; fi
    }
    first=$(fact 1 machine_id) second=$(fact 2 machine_id)
    result "boot 1 was a first boot, boot 2 was not" '[[ $(fact 1 boot)/$(fact 2 boot) == first/second ]]' "$(fact 1 boot)/$(fact 2 boot)"
    result "ConditionFirstBoot= true on boot 1 only" '[[ $(fact 1 first_boot_condition)/$(fact 2 first_boot_condition) == yes/no ]]' \
        "$(fact 1 first_boot_condition)/$(fact 2 first_boot_condition)"
    result "the machine-id set up on the first boot is kept" '[[ -n $first && $first == "$second" ]]' "'$first' then '$second'"
}

# ------------------------------------------------------------------ the roots
say "Debian 12 root with systemd 252 (cached under target/bookworm-root)"
ROOT12=$(SID_ROOT=$PROJ/target/bookworm-root SID_SUITE=bookworm SID_PACKAGES=systemd-sysv,procps \
    "$PROJ/tests/diff/sid-root.sh" | tail -n1) || fatal "building the Debian 12 root failed"
[[ -x $ROOT12/lib/systemd/systemd ]] || fatal "'$ROOT12' has no systemd"
[[ ${SERVICE_VARIANTS:-systemd252} == *systemd252* ]] && variant systemd252 "$ROOT12"
[[ ${SERVICE_VARIANTS:-firstboot252} == *firstboot252* ]] && firstboot firstboot252 "$ROOT12"

say "Debian unstable root with the newest systemd (target/sid-root, shared with the 262 differential test)"
ROOTSID=$("$PROJ/tests/diff/sid-root.sh" | tail -n1) || fatal "building the Debian unstable root failed"
[[ -x $ROOTSID/lib/systemd/systemd ]] || fatal "'$ROOTSID' has no systemd"
[[ ${SERVICE_VARIANTS:-systemd-newest} == *systemd-newest* ]] && variant systemd-newest "$ROOTSID"

echo "$PASS passed, $FAIL failed"
((FAIL == 0))
