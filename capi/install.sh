#!/usr/bin/env bash
# Installs libextmerge: the static library, the shared library (soname
# libextmerge.so.0, plus the libextmerge.so development symlink), include/extmerge.h,
# extmerge.pc and the man page libextmerge(3).
#
#   capi/install.sh [--debug] [--no-build]
#
#   PREFIX      default /usr/local
#   LIBDIR      default $PREFIX/lib
#   INCLUDEDIR  default $PREFIX/include
#   MANDIR      default $PREFIX/share/man
#   WITH_MAN    auto (default: when scdoc is installed), yes or no: build and install
#               libextmerge(3) from man/libextmerge.3.scd
#   DESTDIR     staging directory prepended to every installed path (packaging, tests)
#   CC          C compiler driver used to link the shared library (default cc)
#
# Builds `cargo build --release -p extmerge-capi` first (--debug: the dev profile;
# --no-build: use what target/ has).
#
# The installed libextmerge.so.0 is linked here from libextmerge.a with
# capi/extmerge.sym, not copied from target/: rustc gives a cdylib its own version
# script, which lld (rustc's default linker) applies before ours, so cargo's .so
# exports only extmerge_* but unversioned. Linking the static library ourselves gives
# every symbol the version EXTMERGE_0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
build=1
for a in "$@"; do
    case "$a" in
        --debug) profile=debug ;;
        --release) profile=release ;;
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
# From `cargo rustc -p extmerge-capi --crate-type staticlib -- --print native-static-libs`,
# without its -lgcc_s: the unwinder comes with the compiler driver (gcc and clang add
# libgcc_s "as needed" to a dynamic link, libgcc_eh to a -static one), and as a library
# of its own -lgcc_s would break `cc -static $(pkg-config --static --libs extmerge)`:
# there is no libgcc_s.a.
NATIVE_LIBS="-lutil -lrt -lpthread -lm -ldl -lc"

if [ "$build" = 1 ]; then
    if [ "$profile" = release ]; then
        cargo build --release -p extmerge-capi
    else
        cargo build -p extmerge-capi
    fi
fi
target_dir=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
out=${target_dir:-target}/$profile
for f in "$out/libextmerge.a" include/extmerge.h capi/extmerge.pc.in capi/extmerge.sym; do
    [ -f "$f" ] || { echo "install.sh: missing $f (build first)" >&2; exit 1; }
done
version=$(sed -n 's/^version = "\(.*\)"/\1/p' capi/Cargo.toml | head -n1)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# shellcheck disable=SC2086
"$CC" -shared -o "$work/libextmerge.so.0" \
    -Wl,--whole-archive "$out/libextmerge.a" -Wl,--no-whole-archive \
    -Wl,--version-script=capi/extmerge.sym -Wl,-soname,libextmerge.so.0 \
    -Wl,--gc-sections -Wl,-z,relro -Wl,-z,now $NATIVE_LIBS
if [ "$profile" = release ]; then
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
echo "installed libextmerge $version ($profile) into ${DESTDIR}$PREFIX"
