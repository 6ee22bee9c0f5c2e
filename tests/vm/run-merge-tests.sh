#!/bin/bash
# Runs the root-only merge tests (tests/merge.rs) inside a VM booted with Debian's
# cloud kernel (6.1: no overlayfs "lowerdir+", no MOVE_MOUNT_BENEATH), so that the
# fallbacks for older kernels are exercised, with tests/vm/vm-run.
#
#   tests/vm/run-merge-tests.sh [TEST-HARNESS-ARGS...]
#       e.g. tests/vm/run-merge-tests.sh refresh         (only tests matching "refresh")
#            tests/vm/run-merge-tests.sh --include-ignored
#
# Environment: VM_RUN (the runner, default tests/vm/vm-run), VM_RUN_OPTS (extra vm-run options, e.g.
# "--kernel /boot/vmlinuz-..."), MERGE_VM_OUT (default target/vm-run/merge).
# EXTMERGE_LAYERS / EXTMERGE_REPLACE, when set, are passed to the guest's tests (on
# the kernel command line, which the kernel hands to init as environment), e.g.
# EXTMERGE_LAYERS=joined to force the single "lowerdir=" string.
#
# Exit status: the guest's (0 = all tests passed); non-zero on build errors. When the
# runner's prerequisites are missing: SKIP and 0, or a failure with CI set (tests/vm/lib.sh).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT"
OUT=${MERGE_VM_OUT:-target/vm-run/merge}
# shellcheck source=tests/vm/lib.sh
. "$HERE/lib.sh"
vm_require

# Build the test binary and the extmerge binary; find both in cargo's JSON messages.
# The test binary has env!("CARGO_BIN_EXE_extmerge") compiled in: an absolute host
# path, so the binary goes into the guest at that very path.
json=$(cargo test --features fault-injection --test merge --no-run --message-format=json)
exe_of() { # KIND NAME
    grep -F "\"kind\":[\"$1\"]" <<<"$json" | grep -F "\"name\":\"$2\"" |
        grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | tail -n1
}
test_exe=$(exe_of test merge)
bin_exe=$(exe_of bin extmerge)
if [[ -z $test_exe || -z $bin_exe ]]; then
    echo "run-merge-tests: could not find the test binary ('$test_exe') or extmerge ('$bin_exe')" >&2
    exit 1
fi
if ! grep -qF "$bin_exe" "$test_exe"; then
    echo "run-merge-tests: $test_exe does not name $bin_exe (CARGO_BIN_EXE_extmerge)" >&2
    exit 1
fi
echo "run-merge-tests: test binary $test_exe"
echo "run-merge-tests: extmerge     $bin_exe"

guest_env=()
for v in EXTMERGE_LAYERS EXTMERGE_REPLACE; do
    if [[ -n ${!v:-} ]]; then
        guest_env+=("$v=${!v}")
    fi
done
append=()
if ((${#guest_env[@]})); then
    append=(--append "${guest_env[*]}")
    echo "run-merge-tests: guest environment: ${guest_env[*]}"
fi

mkdir -p "$OUT"
start=$SECONDS
rc=0
# shellcheck disable=SC2086 # VM_RUN_OPTS is a list of options
bash "$VM_RUN" --out "$OUT" --mem 1G --timeout 900 ${VM_RUN_OPTS:-} "${append[@]}" \
    --add "$bin_exe:$bin_exe" \
    -- "$test_exe" --test-threads=1 "$@" || rc=$?
echo "run-merge-tests: guest status $rc after $((SECONDS - start)) s (console: $OUT/console.log)"
exit "$rc"
