#!/bin/sh
# Guest side of tests/vm/run-signed-tests.sh (runs inside the VM as root, busybox sh, on
# the test kernel that trusts the test CA; no modules). SIGNED_PHASE (from the kernel
# command line) says which boot this is: "default" or "require" (booted with
# dm_verity.require_signatures=1). The images are in /images (see the host script for
# what each one is). Each case merges one image into a root of its own under /tmp with
# the extmerge CLI and checks the outcome: for a merge, the dm table, the files and that
# unmerge leaves nothing; for a refusal, the message (the image's file name and the
# kernel's reason) and that no loop device, dm device or mount is left. Writes
# /out/results.txt, whose last line is "N passed, M failed"; exits non-zero on failure.
set -u
pass=0 fail=0
ok() { echo "PASS: $*" >>/out/results.txt; pass=$((pass + 1)); }
ko() { echo "FAIL: $*" >>/out/results.txt; fail=$((fail + 1)); }
: >/out/results.txt
phase=${SIGNED_PHASE:-}
echo "kernel $(uname -r), phase '$phase'"

# What must be as before after a refusal: mounts, dm devices, bound loop devices.
state() {
    cut -d' ' -f2 /proc/mounts | sort
    ls -d /sys/block/dm-* 2>/dev/null
    for b in /sys/block/loop*/loop/backing_file; do
        [ -e "$b" ] && echo "${b%/loop/backing_file}: $(cat "$b")"
    done
}
# settle [BASE]: waits (up to 5 s) until the state is BASE's (default /tmp/state.base):
# deferred dm removal and loop autoclear finish in kernel workers.
settle() {
    i=0
    while [ $i -lt 50 ] && ! state | cmp -s - "${1:-/tmp/state.base}"; do
        sleep 0.1
        i=$((i + 1))
    done
}
state >/tmp/state.base

# root CASE IMAGE...: a root for CASE with the images (and their sidecars) given.
root() {
    r=/tmp/roots/$1
    shift
    mkdir -p "$r/usr/lib" "$r/var/lib/extensions"
    printf 'ID=debian\nVERSION_ID=12\nSYSEXT_LEVEL=1.0\n' >"$r/usr/lib/os-release"
    for f in "$@"; do cp "/images/$f" "$r/var/lib/extensions/"; done
}
# run CASE ARGS...: extmerge on CASE's root; output in /tmp/CASE.log, status in $rc.
run() {
    c=$1
    shift
    rc=0
    extmerge --root="/tmp/roots/$c" --no-reload "$@" >"/tmp/$c.log" 2>&1 || rc=$?
    sed "s/^/  [$c] /" "/tmp/$c.log"
}

# merges CASE IMAGE [EXTRA-OPTIONS]: merge works, the dm table of the image's verity device
# carries a signature key unless CASE has "unsigned" in its name, the sentinel file reads;
# then unmerge leaves nothing.
merges() {
    c=$1 name=$2
    shift 2
    run "$c" "$@" merge
    if [ "$rc" != 0 ]; then
        ko "$c: merge failed (status $rc): $(tail -n1 "/tmp/$c.log")"
        return
    fi
    table=$(dmsetup table 2>&1)
    echo "$table" | sed "s/^/  [$c] dm: /"
    case $c in
        unsigned*) want="" ;;
        *) want=root_hash_sig_key_desc ;;
    esac
    if ! echo "$table" | grep -q ' verity '; then
        ko "$c: no dm-verity device while merged"
    elif [ -n "$want" ] && echo "$table" | grep ' verity ' | grep -q "$want"; then
        ok "$c: merged, the dm table has $want"
    elif [ -z "$want" ] && ! echo "$table" | grep -q root_hash_sig_key_desc; then
        ok "$c: merged with dm-verity and no signature"
    else
        ko "$c: the dm table does not match (want '${want:-no signature}'): $table"
    fi
    got=$(cat "/tmp/roots/$c/usr/share/extmerge-test/ddi-sentinel" 2>&1)
    if [ "$got" = "ddi-sentinel $name" ]; then ok "$c: its files read"; else ko "$c: sentinel: $got"; fi
    run "$c" unmerge
    settle
    if [ "$rc" = 0 ] && state | cmp -s - /tmp/state.base; then
        ok "$c: unmerged, nothing left"
    else
        ko "$c: unmerge (status $rc) left: $(state | diff /tmp/state.base - | grep '^[+-][^+-]' | tr '\n' ' ')"
    fi
}

# refused CASE FILE REASON [EXTRA-OPTIONS]: merge fails with a message naming FILE and
# holding REASON (a fixed string), and leaves nothing behind.
refused() {
    c=$1 file=$2 reason=$3
    shift 3
    run "$c" "$@" merge
    if [ "$rc" = 0 ]; then
        ko "$c: merged, but should have been refused"
        run "$c" unmerge
        return
    fi
    msg=$(cat "/tmp/$c.log")
    if echo "$msg" | grep -qF "$file" && echo "$msg" | grep -qF "$reason"; then
        ok "$c: refused (status $rc), naming $file and '$reason'"
    else
        ko "$c: refused, but the message does not name $file and '$reason': $msg"
    fi
    settle
    if state | cmp -s - /tmp/state.base; then
        ok "$c: no loop device, dm device or mount left"
    else
        ko "$c: left behind: $(state | diff /tmp/state.base - | grep '^[+-][^+-]' | tr '\n' ' ')"
    fi
}

# extra: extmerge-initrd with extmerge.extra=sysroot takes the initrd's /.extra images (this
# initramfs is a real one: its / is the kernel's rootfs) onto a real root at /sysroot:
# not without the switch; an unsigned one is refused by the strict /.extra policy (named,
# nothing left); the CA-signed one merges with its signature in the dm table. Then the
# initramfs is emptied as switch-root empties it (the image file deleted, caches
# dropped), the real root is moved onto / and entered as switch_root does, in a mount
# namespace of its own, and the image's files still read, whole and unchanged.
extra() {
    mkdir -p /.extra/sysext /sysroot
    mount -t tmpfs -o mode=0755 tmpfs /sysroot
    mkdir -p /sysroot/usr/lib /sysroot/usr/share /sysroot/etc /sysroot/bin /sysroot/opt
    printf 'ID=debian\nVERSION_ID=12\nSYSEXT_LEVEL=1.0\n' >/sysroot/usr/lib/os-release
    cp /bin/busybox /sysroot/bin/busybox
    cp /images/ca.raw /images/unsigned.raw /.extra/sysext/
    state >/tmp/state.extra
    want=$(cat /images/ca.blob.sha256)
    printf 'root=/dev/vda\n' >/tmp/cmdline.off
    printf 'root=/dev/vda extmerge.extra=sysroot\n' >/tmp/cmdline.on
    initrd() {
        rc=0
        extmerge-initrd --sysroot=/sysroot --cmdline="/tmp/cmdline.$1" sysroot >/tmp/extra.log 2>&1 || rc=$?
        sed "s/^/  [extra $1] /" /tmp/extra.log
    }
    initrd off
    if [ "$rc" = 0 ] && [ ! -e /sysroot/usr/share/extmerge-test ] && ! grep -q '\.extra' /tmp/extra.log; then
        ok "extra: without extmerge.extra=sysroot /.extra is not looked at"
    else
        ko "extra: without the switch (status $rc): $(cat /tmp/extra.log)"
    fi
    initrd on
    if grep -qF "/.extra/sysext/unsigned.raw: image policy" /tmp/extra.log && [ ! -e /sysroot/usr/share/extmerge-test ]; then
        ok "extra: the unsigned /.extra image is refused by the strict policy, named"
    else
        ko "extra: the unsigned image was not refused as it should be: $(cat /tmp/extra.log)"
    fi
    settle /tmp/state.extra
    if state | cmp -s - /tmp/state.extra; then
        ok "extra: the refusal left no loop device, dm device or mount"
    else
        ko "extra: the refusal left: $(state | diff /tmp/state.extra - | grep '^[+-][^+-]' | tr '\n' ' ')"
    fi
    rm /.extra/sysext/unsigned.raw
    initrd on
    table=$(dmsetup table 2>&1)
    if [ "$rc" = 0 ] && echo "$table" | grep ' verity ' | grep -q root_hash_sig_key_desc; then
        ok "extra: the signed /.extra image merged onto the real root, signature in the dm table"
    else
        ko "extra: merge (status $rc): $(cat /tmp/extra.log) dm: $table"
    fi
    if grep -qF '"/.extra/sysext/ca.raw"' /run/extmerge/report.json && grep -qF 'extmerge.extra=sysroot' /run/extmerge/report.json; then
        ok "extra: the boot report names /.extra/sysext/ca.raw and the switch"
    else
        ko "extra: the boot report: $(cat /run/extmerge/report.json)"
    fi
    # What switch-root does to the initramfs: its files are deleted.
    rm -rf /.extra
    sync
    echo 3 >/proc/sys/vm/drop_caches
    got=$(unshare -m sh -c 'cd /sysroot && mount --move . / && exec chroot . /bin/busybox sh -c "
        /bin/busybox cat /usr/share/extmerge-test/ddi-sentinel
        /bin/busybox sha256sum /usr/share/extmerge-test/blob.bin"' 2>&1)
    echo "$got" | sed 's/^/  [extra after switch-root] /'
    if echo "$got" | grep -qx "ddi-sentinel ca" && echo "$got" | grep -q "^$want "; then
        ok "extra: after the initramfs is emptied and the real root entered, the image's files read unchanged"
    else
        ko "extra: after switch-root (want blob $want): $got"
    fi
}

NOT_TRUSTED="not in the kernel's trusted keyrings"
NOT_COVERED="does not cover this root hash"

case $phase in
default)
    req=$(cat /sys/module/dm_verity/parameters/require_signatures 2>&1)
    if [ "$req" = N ]; then ok "signatures optional (require_signatures=$req)"; else ko "require_signatures=$req"; fi

    root ca ca.raw
    merges ca ca
    root ddi-sidecar ddi-sidecar.raw ddi-sidecar.usrhash ddi-sidecar.usrhash.p7s
    merges ddi-sidecar ddi-sidecar
    root bare bare.raw bare.verity bare.roothash bare.roothash.p7s
    merges bare bare

    root untrusted untrusted.raw
    refused untrusted untrusted.raw "$NOT_TRUSTED"
    if grep -qF "$NOT_COVERED" /tmp/untrusted.log; then ko "untrusted: the message also says '$NOT_COVERED'"; fi
    root wronghash wronghash.raw
    refused wronghash wronghash.raw "$NOT_COVERED"
    if grep -qF "$NOT_TRUSTED" /tmp/wronghash.log; then ko "wronghash: the message says '$NOT_TRUSTED' (the CA is trusted)"; fi

    # The leaf certificate: refused until it is in the secondary keyring, where only a
    # certificate signed by a trusted key may go.
    root leaf-before leaf.raw
    refused leaf-before leaf.raw "$NOT_TRUSTED"
    if keyctl padd asymmetric "" %:.secondary_trusted_keys </images/untrusted.der >/tmp/k.log 2>&1; then
        ko "the kernel added a self-signed certificate to .secondary_trusted_keys"
    else
        ok "a self-signed certificate cannot join .secondary_trusted_keys: $(cat /tmp/k.log)"
    fi
    if keyctl padd asymmetric "" %:.secondary_trusted_keys </images/leaf.der >/tmp/k.log 2>&1; then
        ok "the CA-issued certificate joined .secondary_trusted_keys (key $(cat /tmp/k.log))"
    else
        ko "adding the CA-issued certificate to .secondary_trusted_keys: $(cat /tmp/k.log)"
    fi
    root leaf leaf.raw
    merges leaf leaf

    # One changed data byte: the merge works (only read blocks are checked), reading that
    # block fails with EIO and never returns the changed bytes.
    root tampered tampered.raw
    run tampered merge
    if [ "$rc" = 0 ]; then
        blob=/tmp/roots/tampered/usr/share/extmerge-test/blob.bin
        if cat "$blob" >/tmp/blob.out 2>/tmp/blob.err; then
            ko "tampered: blob.bin read without error"
        elif grep -qE "I/O error|Input/output error" /tmp/blob.err; then
            ok "tampered: reading blob.bin fails with EIO ($(cat /tmp/blob.err))"
        else
            ko "tampered: reading blob.bin failed, but not with EIO: $(cat /tmp/blob.err)"
        fi
        if grep -q ZERITY /tmp/blob.out; then ko "tampered: the changed bytes were read"; else ok "tampered: the changed bytes never read"; fi
        run tampered unmerge
        settle
        if [ "$rc" = 0 ] && state | cmp -s - /tmp/state.base; then ok "tampered: unmerged, nothing left"; else ko "tampered: unmerge (status $rc) left something"; fi
    else
        ko "tampered: merge failed (status $rc): $(tail -n1 /tmp/tampered.log)"
    fi

    # Unsigned: merges by default; --image-policy=usr=signed refuses it and takes the signed.
    root unsigned unsigned.raw
    merges unsigned unsigned
    root unsigned-policy unsigned.raw
    refused unsigned-policy unsigned.raw "forbids this image" --image-policy=usr=signed
    root ca-policy ca.raw
    merges ca-policy ca --image-policy=usr=signed

    extra
    ;;
require)
    req=$(cat /sys/module/dm_verity/parameters/require_signatures 2>&1)
    if [ "$req" = Y ]; then ok "signatures required (require_signatures=$req)"; else ko "require_signatures=$req, not Y"; fi
    root unsigned-required unsigned.raw
    refused unsigned-required unsigned.raw "dm_verity.require_signatures"
    root ca-required ca.raw
    merges ca-required ca
    ;;
*)
    ko "unknown SIGNED_PHASE '$phase'"
    ;;
esac

echo "$pass passed, $fail failed" >>/out/results.txt
cat /out/results.txt
[ "$fail" -eq 0 ]
