#!/bin/sh
# Guest side of tests/vm/run-image-tests.sh (runs inside the VM as root, busybox sh).
# Runs every test of /usr/bin/extmerge-image-tests (tests/images.rs) against the guest
# kernel, one at a time (dm device names are global), with the prebuilt fixtures in
# /fixtures; EXTMERGE_VM=1 turns any would-be SKIP into a failure. Then checks that
# nothing was left behind: no dm device, no /dev/mapper node but control, no bound
# loop device, nothing under /run/extmerge. Writes /out/tests.txt and
# /out/results.txt, whose last line is "N passed, M failed"; exits non-zero if
# anything failed.
set -u
export EXTMERGE_VM=1 EXTMERGE_FIXTURES=/fixtures RUST_BACKTRACE=1
pass=0 fail=0
ok() { echo "PASS: $*" >>/out/results.txt; pass=$((pass + 1)); }
ko() { echo "FAIL: $*" >>/out/results.txt; fail=$((fail + 1)); }
: >/out/results.txt

echo "kernel $(uname -r)"
/usr/bin/extmerge-image-tests --test-threads=1 --show-output >/out/tests.txt 2>&1
rc=$?
cat /out/tests.txt

# Per-test lines from libtest ("test host::bare_erofs ... ok").
grep -E '^test .* \.\.\. (ok|FAILED|ignored)$' /out/tests.txt | while read -r _ name _ res; do
    echo "$res $name"
done >/tmp/per-test
while read -r res name; do
    case $res in
        ok) ok "$name" ;;
        FAILED) ko "$name" ;;
    esac
done </tmp/per-test
skips=$(grep '^SKIP' /out/tests.txt)
if [ -n "$skips" ]; then
    ko "a test skipped itself in the VM: $(echo "$skips" | head -n1)"
fi
if [ "$rc" -ne 0 ] && ! grep -q '^FAILED ' /tmp/per-test; then
    ko "test binary exited with status $rc (crash?)"
fi
if [ ! -s /tmp/per-test ]; then
    ko "no tests ran"
fi

# Leftovers. Deferred dm removal and loop autoclear finish in kernel workers: give
# them a moment.
i=0
while [ $i -lt 50 ] && { ls -d /sys/block/dm-* >/dev/null 2>&1 || grep -qs . /sys/block/loop*/loop/backing_file; }; do
    sleep 0.1
    i=$((i + 1))
done
left=$(ls -d /sys/block/dm-* 2>/dev/null)
if [ -z "$left" ]; then ok "no dm devices left"; else ko "dm devices left: $left"; fi
nodes=$(ls /dev/mapper 2>/dev/null | grep -v '^control$')
if [ -z "$nodes" ]; then ok "no /dev/mapper nodes left"; else ko "/dev/mapper nodes left: $nodes"; fi
bound=""
for b in /sys/block/loop*/loop/backing_file; do
    [ -e "$b" ] && bound="$bound ${b%/loop/backing_file}:$(cat "$b")"
done
if [ -z "$bound" ]; then ok "no loop devices bound"; else ko "loop devices bound:$bound"; fi
ws=$(ls /run/extmerge 2>/dev/null)
if [ -z "$ws" ]; then ok "nothing left in /run/extmerge"; else ko "left in /run/extmerge: $ws"; fi

echo "$pass passed, $fail failed" >>/out/results.txt
cat /out/results.txt
[ "$fail" -eq 0 ]
