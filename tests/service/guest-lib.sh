# Sourced by the guest scripts of tests/service/ (sd-test.sh, sd-actions.sh,
# fb-check.sh) inside the booted root: the console and the verdict lines the runner
# (tests/service/run-service-tests.sh) counts.
export PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
con=/dev/ttyS0
say() { echo "$*" >"$con"; }
pass() { say "EXTMERGE-SD PASS $1"; }
fail() { say "EXTMERGE-SD FAIL $1: $2"; }
# check NAME COMMAND...: PASS when COMMAND succeeds, else FAIL with its output.
check() {
    n=$1; shift
    if "$@" >/tmp/check.out 2>&1; then pass "$n"; else fail "$n" "$(tr '\n' '|' </tmp/check.out | cut -c1-300)"; fi
}
# same GOT WANT
same() { [ "$1" = "$2" ] || { echo "got '$1', want '$2'"; return 1; }; }
