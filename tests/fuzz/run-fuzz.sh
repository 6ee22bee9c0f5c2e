#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/ and runs each for SECONDS (default 30) on the
# committed seed corpus (fuzz/corpus/<target>/), printing libFuzzer's execs/s and total
# execs per target. Exits 1 if any target crashes (panic, ASan report, timeout, OOM) or
# does not build; prints SKIP and exits 0 when nightly Rust or cargo-fuzz is unavailable
# (cargo-fuzz is installed from crates.io when missing).
#
# Usage: tests/fuzz/run-fuzz.sh [SECONDS] [TARGET...]
#   TARGET defaults to every target (`cargo fuzz list`).
#   FUZZ_KEEP_CORPUS=DIR keeps the corpus each run grows in DIR/<target>/ (default: a
#   temporary directory, so the committed seeds stay as make-seeds.sh wrote them).
#   FUZZ_LOG_DIR=DIR keeps each target's libFuzzer log as DIR/<target>.log.
# A crash leaves its input in fuzz/artifacts/<target>/; reproduce it with
#   cd fuzz && cargo +nightly fuzz run <target> artifacts/<target>/crash-…
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

secs=${1:-30}
shift || true
case $secs in
'' | *[!0-9]*)
    echo "usage: $0 [SECONDS] [TARGET...]" >&2
    exit 2
    ;;
esac

skip() {
    echo "SKIP: $*"
    exit 0
}

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    skip "no nightly Rust toolchain (cargo-fuzz needs it: rustup toolchain install nightly)"
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "run-fuzz: cargo-fuzz missing, installing it (cargo install cargo-fuzz --locked)"
    if ! cargo install cargo-fuzz --locked >/tmp/run-fuzz-install.log 2>&1 ||
        ! cargo +nightly fuzz --version >/dev/null 2>&1; then
        tail -5 /tmp/run-fuzz-install.log
        skip "cargo-fuzz could not be installed"
    fi
fi

cd fuzz
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list 2>/dev/null)
fi
if [ ${#targets[@]} -eq 0 ]; then
    echo "run-fuzz: no fuzz targets found" >&2
    exit 1
fi

# Longest input per target: what the parser can look at, plus room to grow.
max_len() {
    case $1 in
    gpt) echo 131072 ;;         # MBR + header + entry array + small partitions
    fs_superblock) echo 69632 ;; # PROBE_BYTES (64 KiB) + a little
    verity_sig_json) echo 16384 ;;
    env_file) echo 4096 ;;
    vpick) echo 2048 ;;
    verity_superblock) echo 1024 ;; # 512-byte superblock + trailing fields
    image_name) echo 512 ;;         # names are at most 255 bytes
    image_policy | metadata) echo 1024 ;;
    *) echo 4096 ;;
    esac
}

echo "==> building fuzz targets (cargo +nightly fuzz build)"
if ! cargo +nightly fuzz build >/tmp/run-fuzz-build.log 2>&1; then
    tail -40 /tmp/run-fuzz-build.log
    echo "run-fuzz: build failed"
    echo "0 passed, ${#targets[@]} failed"
    exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
logdir=${FUZZ_LOG_DIR:-$tmp/logs}
mkdir -p "$logdir"
passed=0
failed=0
failed_names=()
printf '%-18s %8s %12s %14s  %s\n' target seconds execs/s "total execs" result
for t in "${targets[@]}"; do
    work=${FUZZ_KEEP_CORPUS:+$FUZZ_KEEP_CORPUS/$t}
    work=${work:-$tmp/corpus/$t}
    mkdir -p "$work" "corpus/$t" "artifacts/$t"
    log="$logdir/$t.log"
    start=$(date +%s)
    cargo +nightly fuzz run "$t" "$work" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=1024 -max_len="$(max_len "$t")" \
        -timeout=10 -print_final_stats=1 >"$log" 2>&1
    rc=$?
    took=$(($(date +%s) - start))
    execs=$(sed -n 's/^stat::number_of_executed_units:[[:space:]]*//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec:[[:space:]]*//p' "$log" | tail -1)
    if [ "$rc" -eq 0 ] && [ -n "$execs" ]; then
        result=ok
        passed=$((passed + 1))
    else
        result="FAILED (exit $rc)"
        failed=$((failed + 1))
        failed_names+=("$t")
    fi
    printf '%-18s %8s %12s %14s  %s\n' "$t" "$took" "${rate:--}" "${execs:--}" "$result"
    if [ "$result" != ok ]; then
        grep -E -m5 "panicked|ERROR: AddressSanitizer|ERROR: libFuzzer|SUMMARY|Test unit written" "$log" |
            sed 's/^/    /'
        ls -1 "$root/fuzz/artifacts/$t" 2>/dev/null | tail -3 | sed "s|^|    artifact: fuzz/artifacts/$t/|"
    fi
done

if [ "$failed" -gt 0 ]; then
    echo "run-fuzz: crashed: ${failed_names[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
