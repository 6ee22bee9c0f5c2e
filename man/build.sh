#!/bin/sh
# Builds the man pages from their scdoc sources: man/NAME.SECTION.scd -> OUTDIR/NAME.SECTION.
# Usage: man/build.sh [OUTDIR]   (default: target/man at the top of the source tree)
# Needs scdoc(1) (Debian package scdoc). SOURCE_DATE_EPOCH fixes the date in the pages'
# footer (scdoc reads it); by default it is the date of the last commit of man/.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../target/man}
if ! command -v scdoc >/dev/null 2>&1; then
    echo "man/build.sh: scdoc not found (Debian: apt-get install scdoc)" >&2
    exit 1
fi
# Reproducible output: the date of the last commit that touched man/, when there is one.
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git -C "$here" log -1 --format=%ct -- . 2>/dev/null || true)
    [ -n "$SOURCE_DATE_EPOCH" ] && export SOURCE_DATE_EPOCH
fi
mkdir -p "$out"
n=0
for src in "$here"/*.scd; do
    [ -f "$src" ] || continue
    page=$(basename "$src" .scd)
    scdoc <"$src" >"$out/$page.tmp" || {
        rm -f "$out/$page.tmp"
        echo "man/build.sh: scdoc failed on $src" >&2
        exit 1
    }
    mv "$out/$page.tmp" "$out/$page"
    n=$((n + 1))
done
echo "man/build.sh: $n pages in $out"
