#!/usr/bin/env bash
# Builds the static initrd program extmerge-initrd and prints its path (last line of
# stdout).
#
#   initrd-hooks/build.sh [--small|--stable] [--bin NAME]
#
#   --small   static musl, std rebuilt with panic=immediate-abort (≈ 0.44 MB stripped):
#             needs cargo +nightly with the rust-src component and Debian's musl-tools
#             (musl-gcc, its crt objects and libc.a); no rustup target is downloaded
#   --stable  static-pie glibc with stable Rust (≈ 1.5 MB): what the small build falls
#             back to
#   (neither) --small when its tools are there, otherwise --stable
#   --bin     another binary of the package (extmerge: the CLI, built the same way)
#
# The small build, step by step (what the README's command does):
#   cargo +nightly build --profile initrd --target x86_64-unknown-linux-musl \
#     -Z build-std=std,panic_abort  with  RUSTFLAGS=
#     -Zunstable-options -C panic=immediate-abort   (older nightlies:
#         -Z build-std-features=panic_immediate_abort): no unwinder, no panic messages,
#         no backtrace symbolizer; a panic is an immediate abort (SIGABRT)
#     -C linker=gcc -C link-arg=-specs=<musl.specs>  musl's crt objects (rcrt1.o for
#         static-pie), libc.a, no dynamic loader; the specs file is written to
#         target/musl-link/ from where musl-gcc's own specs file lives
#     -L target/musl-link                            std's unwind crate always asks for
#         a static libunwind; with immediate-abort nothing in it is used, and
#         target/musl-link/libunwind.a is a link to the compiler's libgcc_eh.a (what
#         musl-gcc links)
# Output: target/x86_64-unknown-linux-musl/initrd/NAME (small),
#         target/x86_64-unknown-linux-gnu/initrd/NAME (stable).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=auto
bin=extmerge-initrd
while [ $# -gt 0 ]; do
    case "$1" in
        --small) mode=small ;;
        --stable) mode=stable ;;
        --bin) bin=$2; shift ;;
        --bin=*) bin=${1#--bin=} ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

target_dir=${CARGO_TARGET_DIR:-}
if [ -z "$target_dir" ]; then
    target_dir=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
fi
target_dir=${target_dir:-$PWD/target}

# Where musl's crt objects and libc.a are: next to musl-gcc's specs file
# (Debian: /usr/lib/x86_64-linux-musl).
musl_libdir() {
    local wrapper specs
    wrapper=$(command -v musl-gcc) || return 1
    specs=$(sed -n 's/.*-specs "\{0,1\}\([^" ]*musl-gcc\.specs\).*/\1/p' "$wrapper" | head -n1)
    [ -n "$specs" ] || return 1
    dirname "$specs"
}

small_missing() {
    local sysroot d
    if ! command -v rustup >/dev/null || ! rustup run nightly rustc -V >/dev/null 2>&1; then
        echo "no nightly toolchain"
        return
    fi
    sysroot=$(rustup run nightly rustc --print sysroot)
    if [ ! -d "$sysroot/lib/rustlib/src/rust/library/std" ]; then
        echo "nightly has no rust-src component"
        return
    fi
    if ! d=$(musl_libdir) || [ ! -f "$d/rcrt1.o" ] || [ ! -f "$d/libc.a" ]; then
        echo "no musl-gcc with rcrt1.o and libc.a (apt-get install musl-tools)"
        return
    fi
    if [ ! -f "$(gcc -print-file-name=libgcc_eh.a)" ]; then
        echo "no libgcc_eh.a"
    fi
}

if [ "$mode" != stable ]; then
    why=$(small_missing)
    if [ -n "$why" ]; then
        [ "$mode" = small ] && { echo "build.sh: cannot do the small build: $why" >&2; exit 1; }
        echo "build.sh: $why: building the stable (glibc) one" >&2
        mode=stable
    else
        mode=small
    fi
fi

if [ "$mode" = stable ]; then
    RUSTFLAGS='-C target-feature=+crt-static' \
        cargo build --profile initrd --target x86_64-unknown-linux-gnu --bin "$bin" >&2
    echo "$target_dir/x86_64-unknown-linux-gnu/initrd/$bin"
    exit 0
fi

libdir=$(musl_libdir)
link=$target_dir/musl-link
mkdir -p "$link"
ln -sfn "$(gcc -print-file-name=libgcc_eh.a)" "$link/libunwind.a"
# musl-gcc.specs, plus static-pie (rcrt1.o, no PT_INTERP), which rustc asks for. No
# path of the checkout in it: gcc splits spec strings at spaces (a checkout path may have
# some); rustc passes `-L $link` as one argument itself.
cat >"$link/musl.specs.new" <<EOF
*link_libgcc:
-L$libdir

*libgcc:
libgcc.a%s %:if-exists(libgcc_eh.a%s)

*startfile:
%{static-pie:$libdir/rcrt1.o;:$libdir/Scrt1.o} $libdir/crti.o crtbeginS.o%s

*endfile:
crtendS.o%s $libdir/crtn.o

*link:
%{static-pie:-static -pie --no-dynamic-linker -z text} %{!static-pie:-dynamic-linker /lib/ld-musl-x86_64.so.1} -nostdlib %{shared:-shared} %{static:-static} %{rdynamic:-export-dynamic}

EOF
# Unchanged content keeps its mtime (cargo would relink otherwise; no rebuild of std).
if cmp -s "$link/musl.specs.new" "$link/musl.specs"; then
    rm "$link/musl.specs.new"
else
    mv "$link/musl.specs.new" "$link/musl.specs"
fi

sysroot=$(rustup run nightly rustc --print sysroot)
flags=(-C target-feature=+crt-static -C "linker=gcc" -C link-self-contained=no
    -C "link-arg=-specs=$link/musl.specs" -L "$link")
features=()
# Nightlies from late 2025 on made immediate-abort a panic strategy of its own.
if grep -q 'immediate-abort' "$sysroot/lib/rustlib/src/rust/library/core/src/panicking.rs" 2>/dev/null; then
    flags+=(-Zunstable-options -C panic=immediate-abort)
else
    features=(-Z build-std-features=panic_immediate_abort)
fi
CARGO_ENCODED_RUSTFLAGS=$(IFS=$'\x1f'; echo "${flags[*]}") RUSTFLAGS='' \
    cargo +nightly build --profile initrd --target x86_64-unknown-linux-musl --bin "$bin" \
    -Z build-std=std,panic_abort "${features[@]}" >&2
out=$target_dir/x86_64-unknown-linux-musl/initrd/$bin
if readelf -l "$out" | grep -q INTERP || readelf -d "$out" 2>/dev/null | grep -q NEEDED; then
    echo "build.sh: $out is not static" >&2
    exit 1
fi
echo "$out"
