#!/bin/sh
# Builds one man page from its scdoc source and installs it: the one place the three
# installers (install.sh, capi/install.sh, initrd-hooks/install.sh) share.
# Usage: man/install.sh NAME.SECTION MANDIR     e.g. man/install.sh extmerge.8 /usr/share/man
#   WITH_MAN  auto (default: install when scdoc is there, else say so), yes (fail without
#             scdoc) or no (do nothing)
set -eu
page=$1
mandir=$2
here=$(cd "$(dirname "$0")" && pwd)
case ${WITH_MAN:-auto} in
    no) exit 0 ;;
    yes | auto) ;;
    *) echo "man/install.sh: WITH_MAN must be auto, yes or no, not '$WITH_MAN'" >&2; exit 2 ;;
esac
if ! command -v scdoc >/dev/null 2>&1; then
    if [ "${WITH_MAN:-auto}" = yes ]; then
        echo "install.sh: WITH_MAN=yes but scdoc is not installed" >&2
        exit 1
    fi
    echo "install.sh: scdoc not installed: man page $page not installed" >&2
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sh "$here/build.sh" "$work" >/dev/null
install -Dm644 "$work/$page" "$mandir/man${page##*.}/$page"
