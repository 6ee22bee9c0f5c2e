#!/usr/bin/env bash
# Signed dm-verity images, accepted and refused, on a test kernel that trusts a test CA
# (tests/vm/signed-kernel.sh builds it, or reuses a cached copy whose stamp matches):
# builds the extmerge CLI and the test images on the host, then boots that kernel twice
# in a VM (tests/vm/signed-guest.sh): once as it is, once with
# dm_verity.require_signatures=1. The cases:
#   ca           GPT DDI, usr-verity-sig partition signed by the CA: merges, the dm table
#                has root_hash_sig_key_desc, its files read
#   ddi-sidecar  DDI without signature partition, .usrhash + .usrhash.p7s sidecars (CA)
#   bare         erofs + .verity + .roothash + .roothash.p7s sidecars (CA)
#   leaf         signed by a certificate the CA issued: refused (ENOKEY) until that
#                certificate is added to .secondary_trusted_keys at run time, then merges
#   untrusted    signed by a self-signed key: refused, ENOKEY (signer not trusted)
#   wronghash    signed by the CA over another root hash: refused, EKEYREJECTED
#   tampered     signed by the CA, one data byte flipped: merges, reading the changed
#                block fails with EIO and never yields the changed bytes
#   unsigned     verity without signature: merges; refused under --image-policy=usr=signed
#                (while the signed one merges) and under dm_verity.require_signatures=1
#   extra        extmerge-initrd with extmerge.extra=sysroot: the initramfs's /.extra
#                images onto a real root (unsigned refused, CA-signed merged); the
#                initramfs emptied, the real root entered as switch_root does: the
#                image's files still read unchanged
# Every refusal must name the image file and the kernel's reason, and leave no loop
# device, dm device or mount behind.
#
#   tests/vm/run-signed-tests.sh [vm-run options]
#
# Environment: SIGNED_VM_OUT (results and consoles, default target/vm-run/signed),
# SIGNED_KERNEL_DIR (the kernel and keys, default target/signed-kernel).
#
# Ends with "N passed, M failed" and exits non-zero on failure. A missing prerequisite
# (qemu, the kernel source package, ...) is a SKIP, or a failure when CI is set.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
out=${SIGNED_VM_OUT:-target/vm-run/signed}
# shellcheck source=tests/vm/lib.sh
. tests/vm/lib.sh
vm_require mkfs.erofs sfdisk veritysetup openssl dmsetup keyctl strip

tmp=$(mktemp -d "${TMPDIR:-/tmp}/extmerge-signed-vm.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# A failing setup step still ends with the summary line.
trap 'echo "0 passed, 1 failed (setup failed at line $LINENO)"' ERR
die() { echo "$*" >&2; echo "0 passed, 1 failed ($1)"; exit 1; }

# --- the kernel ---------------------------------------------------------------------------
start=$SECONDS
krc=0
kernel=$(bash tests/vm/signed-kernel.sh | tail -n1) || krc=$?
if ((krc == 77)); then
    trap - ERR
    vm_skip "the signed test kernel cannot be built here (tests/vm/signed-kernel.sh)"
fi
if ((krc != 0)) || [[ ! -s $kernel ]]; then die "building the signed test kernel failed (status $krc)"; fi
echo "kernel: $kernel ($((SECONDS - start)) s)"
keys=$(dirname "$kernel")/keys

# --- the CLI ------------------------------------------------------------------------------
bin=$(vm_build_exe "$tmp/build.log" bin extmerge build --bin extmerge) || die "building extmerge failed"
strip --strip-debug -o "$tmp/extmerge" "$bin"
bin=$(vm_build_exe "$tmp/build-initrd.log" bin extmerge-initrd build --bin extmerge-initrd) ||
    die "building extmerge-initrd failed"
strip --strip-debug -o "$tmp/extmerge-initrd" "$bin"

# --- images -------------------------------------------------------------------------------
img=$tmp/images
mkdir -p "$img"
# ddi NAME KEY-NAME [sign-over]: a DDI named NAME, its signature partition by KEY-NAME
# (none: no signature partition); prints the root hash.
ddi() {
    local name=$1 key=$2
    local -a env=(DDI_BLOB_LINES=4096)
    [[ $key == none ]] || env+=(DDI_SIGN_KEY="$keys/$key.key" DDI_SIGN_CERT="$keys/$key.pem")
    [[ -z ${3:-} ]] || env+=(DDI_SIGN_OVER="$3")
    env "${env[@]}" bash tests/boot/make-verity-ddi.sh "$name" "$img/$name.raw" "$tmp/work-$name"
}
# sign HASH KEY-NAME OUT: a detached signature as systemd expects in *.p7s sidecars.
sign() {
    printf %s "$1" | openssl smime -sign -nocerts -noattr -binary -md sha256 \
        -inkey "$keys/$2.key" -signer "$keys/$2.pem" -outform der -out "$3"
}
ddi ca ca >/dev/null
# The blob's checksum, for reading it back after switch-root (case extra).
sha256sum "$tmp/work-ca/usr/share/extmerge-test/blob.bin" | cut -d' ' -f1 >"$img/ca.blob.sha256"
ddi leaf leaf >/dev/null
ddi untrusted untrusted >/dev/null
ddi wronghash ca "$(printf other | sha256sum | cut -d' ' -f1)" >/dev/null
ddi tampered ca >/dev/null
ddi unsigned none >/dev/null
rh=$(ddi ddi-sidecar none)
echo "$rh" >"$img/ddi-sidecar.usrhash"
sign "$rh" ca "$img/ddi-sidecar.usrhash.p7s"

mkdir -p "$tmp/bare/usr/lib/extension-release.d" "$tmp/bare/usr/share/extmerge-test"
printf 'ID=debian\nSYSEXT_LEVEL=1.0\n' >"$tmp/bare/usr/lib/extension-release.d/extension-release.bare"
echo "ddi-sentinel bare" >"$tmp/bare/usr/share/extmerge-test/ddi-sentinel"
mkfs.erofs --quiet -T0 --all-root "$img/bare.raw" "$tmp/bare"
rh=$(veritysetup format "$img/bare.raw" "$img/bare.verity" | sed -n 's/^Root hash:[[:space:]]*//p')
echo "$rh" >"$img/bare.roothash"
sign "$rh" ca "$img/bare.roothash.p7s"

# One byte of blob.bin changed in place in the usr partition (the 2000th of 4096 lines:
# well past the file system's metadata).
off=$(grep -obUa 'VERITY-BLOCK-XX' "$img/tampered.raw" | sed -n '2000p' | cut -d: -f1)
[[ -n $off ]] || die "marker not found in tampered.raw"
printf 'Z' | dd of="$img/tampered.raw" bs=1 seek="$off" conv=notrunc status=none
grep -qa 'ZERITY-BLOCK-XX' "$img/tampered.raw" || die "corruption did not happen"
cp "$keys/leaf.der" "$img/leaf.der"
openssl x509 -in "$keys/untrusted.pem" -outform der -out "$img/untrusted.der"
echo "images: $(cd "$img" && echo *) ($(du -sh "$img" | cut -f1))"

# --- run: one boot as the kernel is, one with signatures required --------------------------
trap - ERR
rm -rf "$out"
mkdir -p "$out"
pass=0 fail=0
for phase in default require; do
    append="SIGNED_PHASE=$phase"
    [[ $phase == default ]] || append+=" dm_verity.require_signatures=1"
    prc=0
    bash "$VM_RUN" --kernel "$kernel" --modules none --out "$out/$phase" --timeout 600 \
        --quiet --append "$append" --add "$img:/images" --add "$tmp/extmerge:/usr/bin/extmerge" \
        --add "$tmp/extmerge-initrd:/usr/bin/extmerge-initrd" \
        --bin "$(command -v dmsetup)" --bin "$(command -v keyctl)" \
        "$@" -- tests/vm/signed-guest.sh || prc=$?
    r=$out/$phase/results.txt
    if [[ -s $r ]] && grep -q '^[0-9]* passed, [0-9]* failed$' "$r"; then
        grep -E '^(PASS|FAIL)' "$r" | sed "s/^/$phase: /"
        pass=$((pass + $(grep -c '^PASS' "$r" || true)))
        fail=$((fail + $(grep -c '^FAIL' "$r" || true)))
    else
        echo "$phase: FAIL: no results from the VM (vm-run status $prc; $out/$phase/console.log)"
        fail=$((fail + 1))
    fi
    ((prc == 0)) || grep -q '^FAIL' "$r" 2>/dev/null || {
        echo "$phase: FAIL: vm-run status $prc"
        fail=$((fail + 1))
    }
done
echo "$pass passed, $fail failed"
((fail == 0))
