#!/usr/bin/env bash
# Tests of the C ABI (libextmerge): builds the libraries, checks that the committed
# header is what cbindgen generates, runs the capi crate's unit tests, compiles
# tests/c/test-extmerge.c with -Wall -Wextra -Werror and runs it
#   (a) linked statically against target/debug/libextmerge.a, also under valgrind,
#   (b) linked dynamically via pkg-config from a DESTDIR install (capi/install.sh),
#   (c) linked fully statically (cc -static) via pkg-config --static from that install,
# and checks the shared libraries' exported symbols and soname; then builds a second
# libextmerge with the test-only feature fault-injection (in target/fault-injection) and
# runs tests/c/test-panic.c against it (EXTMERGE_ERROR_PANIC, poisoned contexts).
# The merge/unmerge part of test-extmerge needs root (it skips itself otherwise);
# test_list_verdicts_equal_plan runs the extmerge program ($EXTMERGE_CLI, built here).
# Ends with "N passed, M failed"; exits 1 if anything failed.
set -uo pipefail
cd "$(dirname "$0")/../.."

passed=0
failed=0
skipped=0
pass() { passed=$((passed + 1)); echo "PASS: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }
skip() { skipped=$((skipped + 1)); echo "SKIP: $*"; }
step() { printf '\n==> %s\n' "$*"; }

# Tools the steps use; installed when missing and we are root on Debian (as in CI).
need=()
command -v cc >/dev/null || need+=(gcc)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v valgrind >/dev/null || need+=(valgrind)
command -v nm >/dev/null || need+=(binutils)
if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${need[*]}"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends --no-upgrade "${need[@]}"; } >/dev/null || echo "could not install ${need[*]}" >&2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
CC=${CC:-cc}
CFLAGS="-std=c11 -Wall -Wextra -Werror -O1 -g"
# From `cargo rustc -p extmerge-capi --crate-type staticlib -- --print native-static-libs`,
# without -lgcc_s, as in capi/install.sh: the compiler driver adds the unwinder itself.
NATIVE_LIBS="-lutil -lrt -lpthread -lm -ldl"
lib=target/debug

step "build libextmerge (cargo build -p extmerge-capi)"
if cargo build -p extmerge-capi; then
    pass "cargo build -p extmerge-capi"
else
    fail "cargo build -p extmerge-capi"
    echo "$passed passed, $failed failed"
    exit 1
fi
# test-extmerge compares the C list with `extmerge plan` (test_list_verdicts_equal_plan).
if cargo build -p extmerge --bin extmerge; then
    pass "cargo build -p extmerge --bin extmerge"
    export EXTMERGE_CLI=$PWD/$lib/extmerge
else
    fail "cargo build -p extmerge --bin extmerge"
fi

step "header is up to date (capi/gen-header.sh --check)"
if bash capi/gen-header.sh --check; then
    pass "include/extmerge.h matches cbindgen's output"
else
    fail "include/extmerge.h differs from cbindgen's output"
fi

step "capi unit tests (cargo test -p extmerge-capi)"
if cargo test -p extmerge-capi --quiet; then
    pass "cargo test -p extmerge-capi"
else
    fail "cargo test -p extmerge-capi"
fi

step "header compiles as C and C++"
if printf '#include <extmerge.h>\nint main(void) { return extmerge_version() == 0; }\n' |
    $CC $CFLAGS -pedantic -Iinclude -x c -fsyntax-only -; then
    pass "extmerge.h: C11 -pedantic"
else
    fail "extmerge.h: C11 -pedantic"
fi
if command -v c++ >/dev/null; then
    if printf '#include <extmerge.h>\nint main() { return extmerge_version() == nullptr; }\n' |
        c++ -std=c++11 -Wall -Wextra -Werror -Iinclude -x c++ -fsyntax-only -; then
        pass "extmerge.h: C++11"
    else
        fail "extmerge.h: C++11"
    fi
else
    skip "extmerge.h: C++ (no c++ compiler)"
fi

step "static: test-extmerge against $lib/libextmerge.a"
# shellcheck disable=SC2086
if $CC $CFLAGS -Iinclude tests/c/test-extmerge.c "$lib/libextmerge.a" $NATIVE_LIBS \
    -o "$work/test-extmerge-static"; then
    pass "compile test-extmerge (static)"
    if "$work/test-extmerge-static"; then
        pass "test-extmerge (static)"
    else
        fail "test-extmerge (static)"
    fi
else
    fail "compile test-extmerge (static)"
fi

step "static under valgrind"
# valgrind 3.19 (Debian 12) does not implement openat2 (syscall 437), which the library
# uses for every path inside a root: under it test-extmerge skips the tests that read a
# root (and valgrind warns about the syscall). The AddressSanitizer run below covers
# those paths for leaks and for invalid accesses on the C side.
if ! command -v valgrind >/dev/null; then
    skip "valgrind is not installed"
elif [ ! -x "$work/test-extmerge-static" ]; then
    fail "valgrind: no static test binary"
else
    valgrind --quiet --leak-check=full --error-exitcode=99 \
        --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
        --log-file="$work/valgrind.%p.log" "$work/test-extmerge-static" >"$work/valgrind.out" 2>&1
    rc=$?
    grep -h '^# ' "$work/valgrind.out" || true
    tail -n 1 "$work/valgrind.out"
    # Errors are "==PID==" lines; "--PID--" lines are valgrind's own warnings.
    grep -h '^==' "$work"/valgrind.*.log >"$work/valgrind.errors" 2>/dev/null || true
    if [ "$rc" = 0 ] && [ ! -s "$work/valgrind.errors" ]; then
        pass "valgrind $(valgrind --version): no leaks, no invalid accesses"
    else
        cat "$work/valgrind.errors" "$work/valgrind.out"
        fail "valgrind (exit $rc)"
    fi
fi

step "static with AddressSanitizer + LeakSanitizer + UBSan (C side instrumented)"
# The Rust code is not instrumented, but every allocation it makes goes through the
# sanitizer's malloc: leaks anywhere and C reads of freed or out-of-bounds library
# memory are caught, with openat2 available (unlike under valgrind 3.19).
# shellcheck disable=SC2086
if echo 'int main(void){return 0;}' | $CC -fsanitize=address,undefined -x c - -o "$work/asan-probe" 2>/dev/null; then
    # shellcheck disable=SC2086
    if $CC $CFLAGS -fsanitize=address,undefined -fno-omit-frame-pointer -Iinclude \
        tests/c/test-extmerge.c "$lib/libextmerge.a" $NATIVE_LIBS -o "$work/test-extmerge-asan"; then
        if ASAN_OPTIONS=detect_leaks=1:exitcode=98 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
            "$work/test-extmerge-asan" >"$work/asan.out" 2>&1; then
            tail -n 1 "$work/asan.out"
            pass "AddressSanitizer/LeakSanitizer: no leaks, no invalid accesses"
        else
            cat "$work/asan.out"
            fail "AddressSanitizer/LeakSanitizer"
        fi
    else
        fail "compile test-extmerge with -fsanitize=address,undefined"
    fi
else
    skip "the C compiler cannot build with -fsanitize=address,undefined"
fi

step "dynamic: install into a DESTDIR, build with pkg-config"
dest=$work/dest
if DESTDIR=$dest PREFIX=/usr bash capi/install.sh --debug --no-build; then
    pass "capi/install.sh into DESTDIR"
else
    fail "capi/install.sh into DESTDIR"
fi
for f in usr/lib/libextmerge.a usr/lib/libextmerge.so.0 usr/lib/libextmerge.so \
    usr/include/extmerge.h usr/lib/pkgconfig/extmerge.pc; do
    [ -e "$dest/$f" ] || fail "installed file missing: /$f"
done
if [ -L "$dest/usr/lib/libextmerge.so" ] &&
    [ "$(readlink "$dest/usr/lib/libextmerge.so")" = libextmerge.so.0 ]; then
    pass "libextmerge.so -> libextmerge.so.0"
else
    fail "libextmerge.so is not a symlink to libextmerge.so.0"
fi
export PKG_CONFIG_PATH=$dest/usr/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$dest
if flags=$(pkg-config --cflags --libs extmerge) && [ "$(pkg-config --modversion extmerge)" = \
    "$(sed -n 's/^version = "\(.*\)"/\1/p' capi/Cargo.toml | head -n1)" ]; then
    pass "pkg-config extmerge: $flags"
    # shellcheck disable=SC2086
    if $CC $CFLAGS tests/c/test-extmerge.c $flags -o "$work/test-extmerge-dynamic"; then
        pass "compile test-extmerge (dynamic)"
        resolved=$(LD_LIBRARY_PATH=$dest/usr/lib ldd "$work/test-extmerge-dynamic" |
            awk '/libextmerge/ {print $3}')
        if [ "$resolved" = "$dest/usr/lib/libextmerge.so.0" ]; then
            pass "test-extmerge (dynamic) loads $resolved"
        else
            fail "test-extmerge (dynamic) loads '${resolved:-nothing}'"
        fi
        if LD_LIBRARY_PATH=$dest/usr/lib "$work/test-extmerge-dynamic"; then
            pass "test-extmerge (dynamic)"
        else
            fail "test-extmerge (dynamic)"
        fi
    else
        fail "compile test-extmerge (dynamic)"
    fi
else
    fail "pkg-config extmerge"
fi

step "fully static: cc -static with pkg-config --static from the DESTDIR install"
# Libs.private must name only libraries that exist as archives (no -lgcc_s). glibc's
# linker warns that std's getpwuid_r/getaddrinfo need glibc's shared libraries at run
# time: they are in std, never called by libextmerge.
if ! echo 'int main(void){return 0;}' | $CC -static -x c - -o "$work/static-probe" 2>/dev/null; then
    skip "the C compiler cannot link -static (no static libc)"
elif flags=$(pkg-config --static --cflags --libs extmerge); then
    pass "pkg-config --static extmerge: $flags"
    # shellcheck disable=SC2086
    if $CC -static $CFLAGS tests/c/test-extmerge.c $flags -o "$work/test-extmerge-full-static" \
        2>"$work/static-link.err"; then
        pass "compile test-extmerge (-static)"
        if readelf -l "$work/test-extmerge-full-static" | grep -q INTERP ||
            readelf -d "$work/test-extmerge-full-static" 2>/dev/null | grep -q NEEDED; then
            fail "test-extmerge (-static) is not a static executable"
        else
            pass "test-extmerge (-static) has no interpreter and needs no shared library"
        fi
        if "$work/test-extmerge-full-static"; then
            pass "test-extmerge (-static)"
        else
            fail "test-extmerge (-static)"
        fi
    else
        cat "$work/static-link.err"
        fail "compile test-extmerge (-static) with pkg-config --static"
    fi
else
    fail "pkg-config --static extmerge"
fi
unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR

step "fault injection: test-panic against libextmerge built with --features fault-injection"
# A separate target directory: the feature must never reach target/debug/libextmerge.*.
fi_target=$PWD/target/fault-injection
if CARGO_TARGET_DIR=$fi_target cargo build -p extmerge-capi --features fault-injection; then
    pass "cargo build -p extmerge-capi --features fault-injection"
    # shellcheck disable=SC2086
    if $CC $CFLAGS -Iinclude tests/c/test-panic.c "$fi_target/debug/libextmerge.a" $NATIVE_LIBS \
        -o "$work/test-panic"; then
        pass "compile test-panic"
        if RUST_BACKTRACE=0 "$work/test-panic"; then
            pass "test-panic"
        else
            fail "test-panic"
        fi
    else
        fail "compile test-panic"
    fi
    # shellcheck disable=SC2086
    if [ -x "$work/asan-probe" ] && $CC $CFLAGS -fsanitize=address,undefined -fno-omit-frame-pointer \
        -Iinclude tests/c/test-panic.c "$fi_target/debug/libextmerge.a" $NATIVE_LIBS -o "$work/test-panic-asan"; then
        if RUST_BACKTRACE=0 ASAN_OPTIONS=detect_leaks=1:exitcode=98 \
            UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 "$work/test-panic-asan" >"$work/panic-asan.out" 2>&1; then
            tail -n 1 "$work/panic-asan.out"
            pass "test-panic under AddressSanitizer/LeakSanitizer: a poisoned context leaks nothing"
        else
            cat "$work/panic-asan.out"
            fail "test-panic under AddressSanitizer/LeakSanitizer"
        fi
    else
        skip "test-panic under AddressSanitizer (no sanitizer build)"
    fi
else
    fail "cargo build -p extmerge-capi --features fault-injection"
fi

step "exported symbols"
# Only extmerge_* may be exported.
check_exports() {
    local so=$1 bad
    bad=$(nm -D --defined-only "$so" | awk '{print $3}' | sed 's/@.*//' |
        grep -v -e '^extmerge_' -e '^EXTMERGE_' -e '^$' || true)
    if [ -z "$bad" ] && nm -D --defined-only "$so" | grep -q ' extmerge_context_new'; then
        pass "$so exports only extmerge_* ($(nm -D --defined-only "$so" | grep -c ' extmerge_') symbols)"
    else
        fail "$so exports other symbols: $(echo "$bad" | head -n 5 | tr '\n' ' ')"
    fi
    if readelf -d "$so" | grep -q 'SONAME.*\[libextmerge\.so\.0\]'; then
        pass "$so has soname libextmerge.so.0"
    else
        fail "$so soname: $(readelf -d "$so" | grep SONAME)"
    fi
}
check_exports "$lib/libextmerge.so"
if [ -f "$dest/usr/lib/libextmerge.so.0" ]; then
    check_exports "$dest/usr/lib/libextmerge.so.0"
    unversioned=$(objdump -T "$dest/usr/lib/libextmerge.so.0" |
        awk '$NF ~ /^extmerge_/ && $(NF-1) != "EXTMERGE_0.1" {print $NF}')
    if [ -z "$unversioned" ]; then
        pass "installed libextmerge.so.0: every extmerge_* symbol has version EXTMERGE_0.1"
    else
        fail "installed libextmerge.so.0: not versioned EXTMERGE_0.1: $(echo "$unversioned" | head -n 5 | tr '\n' ' ')"
    fi
fi
# Every function the header declares is exported (and nothing else named extmerge_).
declared=$(grep -o '\bextmerge_[a-z_]*(' include/extmerge.h | tr -d '(' | sort -u)
exported=$(nm -D --defined-only "$lib/libextmerge.so" | awk '{print $3}' | sed 's/@.*//' |
    grep '^extmerge_' | sort -u)
if [ "$declared" = "$exported" ]; then
    pass "the header declares exactly the exported functions ($(echo "$exported" | wc -l))"
else
    fail "header and exports differ: $(diff <(echo "$declared") <(echo "$exported") | grep '^[<>]' | tr '\n' ' ')"
fi

echo
if [ "$skipped" -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[ "$failed" = 0 ]
