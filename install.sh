#!/usr/bin/env bash
# Installs the extmerge command: the binary, its man page extmerge(8) and its bash
# completion. (The library: capi/install.sh; the initrd program: initrd-hooks/install.sh.)
#
#   ./install.sh [--debug] [--no-build] [--systemd-names]
#
#   PREFIX       default /usr/local
#   BINDIR       default $PREFIX/bin
#   MANDIR       default $PREFIX/share/man
#   BASHCOMPDIR  default $PREFIX/share/bash-completion/completions (bash-completion
#                looks there for /usr and /usr/local: $XDG_DATA_DIRS)
#   GENERATORDIR default $PREFIX/lib/systemd/system-generators (systemd reads
#                /usr/lib/... and /usr/local/lib/...): extmerge-generator, a link to
#                extmerge, gives services their own confexts (README, "Per-service
#                configuration"); it acts only on units with a NAME.confext.d/
#   WITH_MAN     auto (default: when scdoc is installed), yes or no
#   DESTDIR      staging directory prepended to every installed path (packaging, tests)
#
# Builds `cargo build --release --bin extmerge` first (--debug: the dev profile;
# --no-build: use what target/ has).
#
# --systemd-names also installs systemd-sysext and systemd-confext as symlinks to
# extmerge in BINDIR, and their completions as symlinks to extmerge's. Not by default:
# they would replace (PREFIX=/usr) or shadow (PREFIX=/usr/local) systemd's own programs
# and completions.
set -euo pipefail
cd "$(dirname "$0")"

profile=release
build=1
systemd_names=0
for a in "$@"; do
    case "$a" in
        --debug) profile=debug ;;
        --release) profile=release ;;
        --no-build) build=0 ;;
        --systemd-names) systemd_names=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown argument $a" >&2; exit 2 ;;
    esac
done

PREFIX=${PREFIX:-/usr/local}
BINDIR=${BINDIR:-$PREFIX/bin}
MANDIR=${MANDIR:-$PREFIX/share/man}
BASHCOMPDIR=${BASHCOMPDIR:-$PREFIX/share/bash-completion/completions}
GENERATORDIR=${GENERATORDIR:-$PREFIX/lib/systemd/system-generators}
WITH_MAN=${WITH_MAN:-auto}
DESTDIR=${DESTDIR:-}

if [ "$build" = 1 ]; then
    if [ "$profile" = release ]; then
        cargo build --release --bin extmerge
    else
        cargo build --bin extmerge
    fi
fi
target_dir=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin=${target_dir:-target}/$profile/extmerge
[ -f "$bin" ] || { echo "install.sh: missing $bin (build first)" >&2; exit 1; }

install -Dm755 "$bin" "$DESTDIR$BINDIR/extmerge"
install -Dm644 completion/extmerge.bash "$DESTDIR$BASHCOMPDIR/extmerge"
mkdir -p "$DESTDIR$GENERATORDIR"
ln -sfn "$BINDIR/extmerge" "$DESTDIR$GENERATORDIR/extmerge-generator"
if [ "$systemd_names" = 1 ]; then
    for n in systemd-sysext systemd-confext; do
        ln -sfn extmerge "$DESTDIR$BINDIR/$n"
        ln -sfn extmerge "$DESTDIR$BASHCOMPDIR/$n"
    done
fi
WITH_MAN=$WITH_MAN sh man/install.sh extmerge.8 "$DESTDIR$MANDIR"
echo "installed extmerge ($profile) into $DESTDIR$PREFIX"
