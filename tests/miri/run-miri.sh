#!/usr/bin/env bash
# Runs unit tests under miri (undefined-behaviour checker): every test of the C ABI
# crate (raw pointers, Box handover, C strings, callbacks) and the core's modules that
# hold `unsafe` code (loopdev, dm, keyring, mount: their ioctl structs and encoders) or
# parse untrusted bytes with help from unsafe dependencies (memchr). Tests that need
# syscalls miri does not model are `#[cfg_attr(miri, ignore)]`. The big parsers (GPT,
# superblocks) are safe Rust all the way down and take minutes each under miri: left to
# the fuzzers and the plain test run.
#
# Installs the miri component when missing; prints SKIP and exits 0 when nightly or
# miri cannot be had (rustup needs its own download server, which a registry-only
# network may not reach).
#
# Usage: tests/miri/run-miri.sh
set -uo pipefail
cd "$(dirname "$0")/../.."

skip() {
    echo "SKIP: $*"
    exit 0
}
rustup run nightly rustc --version >/dev/null 2>&1 || skip "no nightly toolchain"
if ! cargo +nightly miri --version >/dev/null 2>&1; then
    echo "run-miri: installing the miri component"
    timeout 300 rustup component add --toolchain nightly miri rust-src >/tmp/run-miri-install.log 2>&1 ||
        { tail -3 /tmp/run-miri-install.log; skip "rustup could not install miri"; }
fi
cargo +nightly miri --version >/dev/null 2>&1 || skip "cargo miri does not run"

target=${MIRI_TARGET_DIR:-target/miri}
fail=0
# The modules of the core run under miri (filters match test paths).
core=(sys::loopdev:: sys::dm:: sys::keyring:: sys::mount:: format::os_release:: format::vpick:: format::name:: format::policy format::verity
    inspect::metadata:: format::json:: format::bytes:: format::text:: sys::txn:: fault::)
echo "==> cargo miri test -p extmerge --lib (${core[*]})"
# The exit status counts, not only the summary line: miri's leak check runs after the
# tests and fails the run after a "test result: ok".
cargo +nightly miri test -p extmerge --lib --target-dir "$target" -- "${core[@]}" >/tmp/run-miri-core.log 2>&1 || fail=1
grep -E '^test result|FAILED|Undefined Behavior|error:' /tmp/run-miri-core.log
grep -q '^test result: ok' /tmp/run-miri-core.log || fail=1
echo "==> cargo miri test -p extmerge-capi --lib"
cargo +nightly miri test -p extmerge-capi --lib --target-dir "$target" >/tmp/run-miri-capi.log 2>&1 || fail=1
grep -E '^test result|FAILED|Undefined Behavior|error:' /tmp/run-miri-capi.log
grep -q '^test result: ok' /tmp/run-miri-capi.log || fail=1
if [ "$fail" != 0 ]; then
    echo "run-miri: FAILED (logs: /tmp/run-miri-core.log, /tmp/run-miri-capi.log)"
    exit 1
fi
echo "run-miri: passed"
