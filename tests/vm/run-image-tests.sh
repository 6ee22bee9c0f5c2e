#!/usr/bin/env bash
# Host side of the disk-image tests (tests/images.rs) in a VM on Debian's 6.1 kernel,
# where device-mapper exists (the host kernel has none, so there the dm-verity cases
# print SKIP): builds the test binary, builds every image fixture on the host with the
# ignored test `build_fixtures` (mkfs.erofs, mksquashfs, mkfs.ext4, veritysetup format,
# sfdisk, openssl: none of them is in the VM), and runs all image tests as root in the
# VM (tests/vm/image-guest.sh), which then checks that no loop or dm device is left.
#
#   tests/vm/run-image-tests.sh [vm-run options]
#
# Ends with "N passed, M failed" and exits non-zero on failure. Without the VM runner's
# prerequisites: SKIP, or a failure when CI is set (tests/vm/lib.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
out=${IMAGE_VM_OUT:-target/vm-run/images}
# shellcheck source=tests/vm/lib.sh
. tests/vm/lib.sh
vm_require mkfs.erofs mksquashfs mkfs.ext4 sfdisk veritysetup openssl strip

tmp=$(mktemp -d "${TMPDIR:-/tmp}/extmerge-image-vm.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# A failing setup step still ends with the summary line.
trap 'echo "0 passed, 1 failed (setup failed at line $LINENO)"' ERR
die() { echo "$*" >&2; echo "0 passed, 1 failed ($1)"; exit 1; }

# --- the test binary ----------------------------------------------------------------------
# The JSON also names the crate's binaries (built for CARGO_BIN_EXE_*): pick the test.
exe=$(vm_build_exe "$tmp/build.log" test images test --features fault-injection --test images --no-run) ||
    die "building the test binary failed"
strip --strip-debug -o "$tmp/extmerge-image-tests" "$exe"

# --- fixtures (built on the host) -----------------------------------------------------------
mkdir -p "$tmp/fixtures"
if ! EXTMERGE_FIXTURES_OUT="$tmp/fixtures" "$exe" --ignored --exact build_fixtures \
    >"$tmp/fixtures.log" 2>&1; then
    tail -n 40 "$tmp/fixtures.log" >&2
    die "building the image fixtures failed"
fi
echo "fixtures: $(ls "$tmp/fixtures" | tr '\n' ' ')($(du -sh "$tmp/fixtures" | cut -f1))"

# EXTMERGE_LAYERS / EXTMERGE_REPLACE, when set, reach the guest's tests through the
# kernel command line (the kernel hands unknown key=value words to init as
# environment), e.g. EXTMERGE_LAYERS=joined to force the single "lowerdir=" string.
append=()
guest_env=()
for v in EXTMERGE_LAYERS EXTMERGE_REPLACE; do
    if [[ -n ${!v:-} ]]; then guest_env+=("$v=${!v}"); fi
done
if ((${#guest_env[@]})); then
    append=(--append "${guest_env[*]}")
    echo "guest environment: ${guest_env[*]}"
fi

# --- run --------------------------------------------------------------------------------
trap - ERR
mkdir -p "$out"
rm -f "$out/results.txt" "$out/tests.txt" "$out/console.log"
rc=0
bash "$VM_RUN" --out "$out" --mem 1G --timeout 900 "${append[@]}" \
    --add "$tmp/fixtures:/fixtures" \
    --add "$tmp/extmerge-image-tests:/usr/bin/extmerge-image-tests" \
    "$@" -- tests/vm/image-guest.sh || rc=$?
echo "--- results ($out/results.txt)"
if [[ -s $out/results.txt ]]; then
    cat "$out/results.txt"
else
    echo "0 passed, 1 failed (no results from the VM, vm-run status $rc)"
    ((rc != 0)) || rc=1
fi
exit "$rc"
