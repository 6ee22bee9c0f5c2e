#!/usr/bin/env bash
# Host side of the kernel-interface tests of src/sys/dm.rs and src/sys/loopdev.rs: builds an
# erofs image, its dm-verity hash tree (veritysetup format) and a copy with one
# corrupted byte, builds the crate's unit-test binary, and runs its dm:: and loopdev::
# tests as root in a VM on Debian's 6.1 kernel (tests/vm/dm-guest.sh), where
# device-mapper exists. The host kernel has none, so there those tests print SKIP.
#
#   tests/vm/run-dm-tests.sh [vm-run options]
#
# Ends with "N passed, M failed" and exits non-zero on failure. Without the VM runner's
# prerequisites: SKIP, or a failure when CI is set (tests/vm/lib.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
out=target/vm-run/dm
# shellcheck source=tests/vm/lib.sh
. tests/vm/lib.sh
vm_require mkfs.erofs veritysetup strip

tmp=$(mktemp -d "${TMPDIR:-/tmp}/extmerge-dm-vm.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# A failing setup step still ends with the summary line.
trap 'echo "0 passed, 1 failed (setup failed at line $LINENO)"' ERR
die() { echo "$*" >&2; echo "0 passed, 1 failed ($1)"; exit 1; }
img=$tmp/images
mkdir -p "$img" "$tmp/tree/usr/share" "$tmp/tree/usr/lib/extension-release.d"

# --- images -------------------------------------------------------------------------
echo "hello verity" >"$tmp/tree/usr/share/hello.txt"
echo "ID=_any" >"$tmp/tree/usr/lib/extension-release.d/extension-release.test"
for _ in $(seq 4096); do printf 'VERITY-BLOCK-XX\n'; done >"$tmp/tree/usr/share/blob.bin"
mkfs.erofs --quiet -T0 -U 00000000-0000-0000-0000-000000000001 --all-root \
    "$img/good.erofs" "$tmp/tree"
veritysetup format "$img/good.erofs" "$img/good.verity" >"$tmp/format.txt"
field() { sed -nE "s/^$1:[[:space:]]+(.*)$/\1/p" "$tmp/format.txt"; }
root_hash=$(field 'Root hash')
salt=$(field 'Salt')
data_blocks=$(field 'Data blocks')
# The tests build the table line "1 data hash 4096 4096 N 1 sha256 ROOT SALT" by hand:
# make sure that is what veritysetup made (hash start 1: the hash file begins with the
# verity superblock, one 4096-byte hash block).
if ! [[ $(field 'Hash type') == 1 && $(field 'Data block size') == 4096 &&
        $(field 'Hash block size') == 4096 && $(field 'Hash algorithm') == sha256 &&
        -n $root_hash && -n $salt && -n $data_blocks ]]; then
    cat "$tmp/format.txt" >&2
    die "unexpected veritysetup format parameters"
fi
(($(stat -c %s "$img/good.erofs") == data_blocks * 4096)) ||
    die "erofs image is not $data_blocks whole 4 KiB blocks"

# One byte of the blob's data changed, far from block 0.
cp "$img/good.erofs" "$img/bad.erofs"
off=$(grep -obUa 'VERITY-BLOCK-XX' "$img/bad.erofs" | sed -n '2000p' | cut -d: -f1)
[[ -n $off ]] || die "marker not found in the erofs image"
printf 'Z' | dd of="$img/bad.erofs" bs=1 seek="$off" conv=notrunc status=none
! cmp -s "$img/good.erofs" "$img/bad.erofs" || die "corruption did not happen"

echo "$root_hash" >"$img/root_hash"
echo "$salt" >"$img/salt"
echo "$data_blocks" >"$img/data_blocks"
echo "$off" >"$img/bad_offset"
echo "hello verity" >"$img/hello"
echo "images: $data_blocks data blocks, root hash $root_hash, corrupted byte at $off (block $((off / 4096)))"

# --- the test binary ----------------------------------------------------------------------
exe=$(cargo test --features fault-injection --lib --no-run --message-format=json 2>"$tmp/build.log" |
    grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | tail -n1) || true
if [[ -z $exe || ! -x $exe ]]; then
    tail -n 30 "$tmp/build.log" >&2
    die "building the test binary failed"
fi
strip --strip-debug -o "$tmp/extmerge-lib-tests" "$exe"

# --- run --------------------------------------------------------------------------------
trap - ERR
mkdir -p "$out"
rm -f "$out/results.txt" "$out/tests.txt" "$out/console.log"
rc=0
bash "$VM_RUN" --out "$out" --timeout 300 \
    --add "$img:/images" \
    --add "$tmp/extmerge-lib-tests:/usr/bin/extmerge-lib-tests" \
    "$@" -- tests/vm/dm-guest.sh || rc=$?
echo "--- results ($out/results.txt)"
if [[ -s $out/results.txt ]]; then
    cat "$out/results.txt"
else
    echo "0 passed, 1 failed (no results from the VM, vm-run status $rc)"
    ((rc != 0)) || rc=1
fi
exit "$rc"
