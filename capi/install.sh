#!/usr/bin/env bash
# Installs libextmerge: the static library, the shared library (soname
# libextmerge.so.0, plus the libextmerge.so development symlink), include/extmerge.h,
# extmerge.pc and the man page libextmerge(3).
#
#   capi/install.sh [--small|--stable|--debug] [--no-build]
#
#   --small     cargo +nightly with the rust-src component: std rebuilt without its
#               backtrace symbolizer, for size, still unwinding (below); ≈ 0.78 MB
#   --stable    stable Rust, the same profile with the prebuilt std (≈ 1.0 MB): what the
#               small build falls back to
#   (neither)   --small when its tools are there, otherwise --stable (--release: the same)
#   --debug     the dev profile (stable), not stripped
#   --no-build  use what target/ has (of the build the options above choose)
#
#   PREFIX      default /usr/local
#   LIBDIR      default $PREFIX/lib
#   INCLUDEDIR  default $PREFIX/include
#   MANDIR      default $PREFIX/share/man
#   WITH_MAN    auto (default: when scdoc is installed), yes or no: build and install
#               libextmerge(3) from man/libextmerge.3.scd
#   DESTDIR     staging directory prepended to every installed path (packaging, tests)
#   CC          C compiler driver used to link the shared library (default cc)
#   FEATURES    cargo features of extmerge-capi to build with; tests only (with its own
#               CARGO_TARGET_DIR: tests/bench/sizes.sh builds the test-only
#               fault-injection feature this way), never for an installed library
#
# Both release builds use the cargo profile `capi` (Cargo.toml: release, that is fat
# LTO, one codegen unit and panic=unwind, with opt-level "z"). The library must unwind:
# every C entry point catches a panic (catch_unwind) and returns EXTMERGE_ERROR_PANIC.
# The small build, step by step:
#   cargo +nightly build --profile capi -p extmerge-capi --target <host> \
#     -Z build-std=std,panic_unwind                 std from source, with its unwinder
#     -Z build-std-features=panic-unwind,optimize_for_size
#                     no `backtrace` feature: the default panic hook, which every
#                     panic goes through, no longer links std's symbolizer (gimli,
#                     addr2line, rustc-demangle, miniz_oxide; 0.17 MB); std's own code
#                     for size (smaller sorts)
#   with RUSTFLAGS=-Zlocation-detail=none           no file:line in panics (the C ABI
#                     reports a panic's message, never its location)
# Output: target/<host>/capi/ (small), target/capi/ (stable), target/debug/.
#
# The installed libextmerge.so.0 is linked here from libextmerge.a with
# capi/extmerge.sym, not copied from target/: rustc gives a cdylib its own version
# script, which lld (rustc's default linker) applies before ours, so cargo's .so
# exports only extmerge_* but unversioned. Linking the static library ourselves gives
# every symbol the version EXTMERGE_0.1. Where the linker and C library have it
# (binutils ≥ 2.38, glibc ≥ 2.36: Debian 12), its relative relocations are packed
# (-z pack-relative-relocs, DT_RELR; 12 KB less), which the installed library then needs
# from the C library it runs with.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=auto
build=1
for a in "$@"; do
    case "$a" in
        --small) mode=small ;;
        --stable) mode=stable ;;
        --release) mode=auto ;;
        --debug) mode=debug ;;
        --no-build) build=0 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown argument $a" >&2; exit 2 ;;
    esac
done

PREFIX=${PREFIX:-/usr/local}
LIBDIR=${LIBDIR:-$PREFIX/lib}
INCLUDEDIR=${INCLUDEDIR:-$PREFIX/include}
MANDIR=${MANDIR:-$PREFIX/share/man}
WITH_MAN=${WITH_MAN:-auto}
DESTDIR=${DESTDIR:-}
CC=${CC:-cc}
FEATURES=${FEATURES:-}
# From `cargo rustc -p extmerge-capi --crate-type staticlib -- --print native-static-libs`,
# without its -lgcc_s: the unwinder comes with the compiler driver (gcc and clang add
# libgcc_s "as needed" to a dynamic link, libgcc_eh to a -static one), and as a library
# of its own -lgcc_s would break `cc -static $(pkg-config --static --libs extmerge)`:
# there is no libgcc_s.a.
NATIVE_LIBS="-lutil -lrt -lpthread -lm -ldl -lc"

# Why the small build cannot be done here (nothing when it can).
small_missing() {
    local sysroot
    if ! command -v rustup >/dev/null || ! rustup run nightly rustc -V >/dev/null 2>&1; then
        echo "no nightly toolchain"
        return
    fi
    sysroot=$(rustup run nightly rustc --print sysroot)
    if [ ! -d "$sysroot/lib/rustlib/src/rust/library/std" ]; then
        echo "nightly has no rust-src component"
    fi
}
if [ "$mode" = auto ] || [ "$mode" = small ]; then
    why=$(small_missing)
    if [ -z "$why" ]; then
        mode=small
    elif [ "$mode" = small ]; then
        echo "install.sh: cannot do the small build: $why" >&2
        exit 1
    else
        echo "install.sh: $why: building the stable library" >&2
        mode=stable
    fi
fi

cargo_args=(-p extmerge-capi)
[ -n "$FEATURES" ] && cargo_args+=(--features "$FEATURES")
target_dir=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
target_dir=${target_dir:-target}
case "$mode" in
    small)
        host=$(rustup run nightly rustc -vV | sed -n 's/^host: //p')
        out=$target_dir/$host/capi
        what="small: nightly build-std, opt-level z, unwinding"
        if [ "$build" = 1 ]; then
            std_features=panic-unwind
            # std's optimize_for_size feature: nightlies from 2024 on.
            sysroot=$(rustup run nightly rustc --print sysroot)
            grep -q '^optimize_for_size' "$sysroot/lib/rustlib/src/rust/library/sysroot/Cargo.toml" \
                2>/dev/null && std_features=$std_features,optimize_for_size
            RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-Zlocation-detail=none" \
                cargo +nightly build --profile capi --target "$host" "${cargo_args[@]}" \
                -Z build-std=std,panic_unwind -Z build-std-features="$std_features"
        fi
        ;;
    stable)
        out=$target_dir/capi
        what="stable, opt-level z, unwinding"
        [ "$build" = 1 ] && cargo build --profile capi "${cargo_args[@]}"
        ;;
    debug)
        out=$target_dir/debug
        what="debug"
        [ "$build" = 1 ] && cargo build "${cargo_args[@]}"
        ;;
esac
for f in "$out/libextmerge.a" include/extmerge.h capi/extmerge.pc.in capi/extmerge.sym; do
    [ -f "$f" ] || { echo "install.sh: missing $f (build first)" >&2; exit 1; }
done
version=$(sed -n 's/^version = "\(.*\)"/\1/p' capi/Cargo.toml | head -n1)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# shellcheck disable=SC2086
# DT_RELR where the linker packs relative relocations and the C library takes them
# (ld ignores an unknown -z option with a warning, made fatal here).
relr=
if echo 'int x; int *p = &x;' | "$CC" -shared -fPIC -x c - -o "$work/relr-probe.so" \
    -Wl,-z,pack-relative-relocs -Wl,--fatal-warnings 2>/dev/null &&
    readelf -d "$work/relr-probe.so" 2>/dev/null | grep -q '(RELR)'; then
    relr=-Wl,-z,pack-relative-relocs
fi
# shellcheck disable=SC2086
"$CC" -shared -o "$work/libextmerge.so.0" \
    -Wl,--whole-archive "$out/libextmerge.a" -Wl,--no-whole-archive \
    -Wl,--version-script=capi/extmerge.sym -Wl,-soname,libextmerge.so.0 \
    -Wl,--gc-sections -Wl,-z,relro -Wl,-z,now $relr $NATIVE_LIBS
if [ "$mode" != debug ]; then
    strip --strip-unneeded "$work/libextmerge.so.0"
fi
# Relative to ${prefix} where they are below it, so the .pc file reads as usual.
pc_libdir=$LIBDIR pc_includedir=$INCLUDEDIR
[ "$LIBDIR" = "$PREFIX/lib" ] && pc_libdir='${exec_prefix}/lib'
[ "$INCLUDEDIR" = "$PREFIX/include" ] && pc_includedir='${prefix}/include'
sed -e "s|@prefix@|$PREFIX|g" -e "s|@libdir@|$pc_libdir|g" \
    -e "s|@includedir@|$pc_includedir|g" -e "s|@version@|$version|g" \
    -e "s|@libs_private@|$NATIVE_LIBS|g" capi/extmerge.pc.in >"$work/extmerge.pc"

install -d "$DESTDIR$LIBDIR/pkgconfig" "$DESTDIR$INCLUDEDIR"
install -m 0644 "$out/libextmerge.a" "$DESTDIR$LIBDIR/libextmerge.a"
install -m 0755 "$work/libextmerge.so.0" "$DESTDIR$LIBDIR/libextmerge.so.0"
ln -sfn libextmerge.so.0 "$DESTDIR$LIBDIR/libextmerge.so"
install -m 0644 include/extmerge.h "$DESTDIR$INCLUDEDIR/extmerge.h"
install -m 0644 "$work/extmerge.pc" "$DESTDIR$LIBDIR/pkgconfig/extmerge.pc"
WITH_MAN=$WITH_MAN sh man/install.sh libextmerge.3 "$DESTDIR$MANDIR"
echo "installed libextmerge $version ($what; libextmerge.so.0: $(stat -c %s "$work/libextmerge.so.0") bytes) into ${DESTDIR}$PREFIX"
