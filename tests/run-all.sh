#!/usr/bin/env bash
# Runs every test: unit tests, root integration tests (private mount namespaces over
# temp dirs), the C ABI suite, a soak of the CLI and a C client merging at once
# (SOAK_CYCLES, 200), the docs suite (man pages against --help and the header,
# the installers, the bash completion), the differential test against Debian's systemd-sysext,
# the VM and boot tests on Debian's 6.1 kernel, signed images on a test kernel that trusts
# a test CA, miri over the unsafe-bearing modules and every fuzz target for FUZZ_SECONDS
# (30). Root-only parts skip themselves with a message when not root.
set -uo pipefail
cd "$(dirname "$0")/.."
fail=0
step() { printf '\n==> %s\n' "$*"; }

step "cargo test (unit + integration)"
# The fault-injection feature lets tests fail a chosen step (release builds cannot).
cargo test --workspace --all-targets --features extmerge/fault-injection || fail=1

if [ -f tests/c/run.sh ]; then
    step "C ABI: header check, C tests (static, shared via pkg-config), valgrind, ASan, symbols"
    bash tests/c/run.sh || fail=1
fi

if [ -f tests/soak/run-soak.sh ]; then
    step "soak: ${SOAK_CYCLES:-200} cycles of merge/refresh/unmerge by the CLI and a C client at once, with churn (mounts, loop devices, staging dirs, client fds and RSS)"
    bash tests/soak/run-soak.sh "${SOAK_CYCLES:-200}" || fail=1
fi

if [ -f tests/docs/run.sh ]; then
    step "docs: man pages (scdoc, groff), --help vs man pages, header vs libextmerge(3), installers into a DESTDIR, bash completion"
    bash tests/docs/run.sh || fail=1
fi

if [ -f tests/diff/systemd-diff.sh ]; then
    step "differential test against systemd-sysext"
    bash tests/diff/systemd-diff.sh || fail=1
fi

if [ -f tests/diff/systemd262-diff.sh ]; then
    step "differential test against Debian unstable's systemd-sysext (262+, chroot built by tests/diff/sid-root.sh under target/)"
    bash tests/diff/systemd262-diff.sh || fail=1
fi

if [ -f tests/vm/run-merge-tests.sh ]; then
    step "VM tests (Linux 6.1: no lowerdir+, no MOVE_MOUNT_BENEATH)"
    bash tests/vm/run-merge-tests.sh || fail=1
fi

if [ -f tests/vm/run-dm-tests.sh ]; then
    step "VM tests: loop devices and dm-verity (no device-mapper on the host)"
    bash tests/vm/run-dm-tests.sh || fail=1
fi

if [ -f tests/vm/run-image-tests.sh ]; then
    step "VM tests: disk images with dm-verity, signatures and policies"
    bash tests/vm/run-image-tests.sh || fail=1
fi

if [ -f tests/boot/run-boot-tests.sh ]; then
    step "boot tests: dracut (systemd and shell flows) and mkosi-initrd-style initrds in a VM"
    bash tests/boot/run-boot-tests.sh --runs 1 || fail=1
fi

if [ -f tests/service/run-service-tests.sh ]; then
    step "service tests: per-service confexts with systemd as PID 1 (Debian 12 with 252, Debian unstable with the newest; extmerge-generator, reload; a first boot with a confext on /etc from the initrd) in a VM"
    bash tests/service/run-service-tests.sh || fail=1
fi

if [ -f tests/vm/run-signed-tests.sh ]; then
    step "VM tests: signed images accepted and refused on a test kernel that trusts a test CA (built by tests/vm/signed-kernel.sh, about 10 min on 2 idle cores, or reused when its stamp matches)"
    bash tests/vm/run-signed-tests.sh || fail=1
fi

if [ -f tests/bench/sizes.sh ]; then
    step "sizes: the small initrd build (musl, nightly build-std) must stay within 1 MiB; every variant's size"
    bash tests/bench/sizes.sh || fail=1
fi

if [ -f tests/miri/run-miri.sh ]; then
    step "miri: the C ABI's unit tests and the core modules with unsafe code or memchr-backed parsers"
    bash tests/miri/run-miri.sh || fail=1
fi

if [ -f tests/fuzz/run-fuzz.sh ]; then
    step "fuzzing: every cargo-fuzz target for ${FUZZ_SECONDS:-30} s from the committed seeds"
    bash tests/fuzz/run-fuzz.sh "${FUZZ_SECONDS:-30}" || fail=1
fi

if [ "$fail" != 0 ]; then
    echo "run-all: FAILED" >&2
    exit 1
fi
echo "run-all: all test groups passed"
