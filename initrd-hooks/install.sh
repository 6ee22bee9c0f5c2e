#!/bin/sh
# Installs extmerge-initrd and its integration for dracut, mkosi-initrd and systemd,
# its man page extmerge-initrd(8) and its bash completion.
# Usage: initrd-hooks/install.sh [BINARY]
#
#   PREFIX              default /usr: the binary, the mkosi-initrd tree, man page, completion
#   DESTDIR             staging directory prepended to every installed path
#   DRACUT_MODULES_DIR  default `pkg-config --variable=dracutmodulesdir dracut`, else
#                       /usr/lib/dracut/modules.d: dracut reads modules only from its own
#                       directory, whatever PREFIX is
#   MKOSI_INITRD_DIR    default /usr/lib/mkosi-initrd: the directory every mkosi-initrd
#                       version reads (newer ones also read /usr/local/lib/mkosi-initrd,
#                       /run/mkosi-initrd and /etc/mkosi-initrd); not under PREFIX
#   MANDIR              default $PREFIX/share/man
#   BASHCOMPDIR         default $PREFIX/share/bash-completion/completions
#   WITH_MAN            auto (default: when scdoc is installed), yes or no
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../target/x86_64-unknown-linux-gnu/initrd/extmerge-initrd}
PREFIX=${PREFIX:-/usr}
D=${DESTDIR:-}
if [ -z "${DRACUT_MODULES_DIR:-}" ]; then
    DRACUT_MODULES_DIR=$(pkg-config --variable=dracutmodulesdir dracut 2>/dev/null || true)
    DRACUT_MODULES_DIR=${DRACUT_MODULES_DIR:-/usr/lib/dracut/modules.d}
fi
MKOSI_INITRD_DIR=${MKOSI_INITRD_DIR:-/usr/lib/mkosi-initrd}
MANDIR=${MANDIR:-$PREFIX/share/man}
BASHCOMPDIR=${BASHCOMPDIR:-$PREFIX/share/bash-completion/completions}
WITH_MAN=${WITH_MAN:-auto}
[ -f "$bin" ] || { echo "install.sh: missing $bin (build it first, see README.md)" >&2; exit 1; }

install -Dm755 "$bin" "$D$PREFIX/bin/extmerge-initrd"
# dracut; module-setup.sh learns where the binary is (dracut's PATH has no /usr/local/bin)
m=$D$DRACUT_MODULES_DIR/90extmerge
install -d "$m"
sed "s|^extmerge_initrd_installed=.*|extmerge_initrd_installed=$PREFIX/bin/extmerge-initrd|" \
    "$here/dracut/90extmerge/module-setup.sh" >"$m/module-setup.sh"
chmod 755 "$m/module-setup.sh"
install -Dm755 "$here/dracut/90extmerge/extmerge-pre-pivot.sh" "$m/extmerge-pre-pivot.sh"
install -Dm644 "$here/systemd/extmerge-initrd.service" "$m/extmerge-initrd.service"
for u in sysext confext; do
    install -Dm644 "$here/systemd/systemd-$u-sysroot.service.d/50-extmerge.conf" \
        "$m/systemd-$u-sysroot.service.d/50-extmerge.conf"
done
# mkosi-initrd: the tree, and the drop-in naming it with ExtraTrees= (as installed)
tree=$PREFIX/lib/extmerge/initrd-tree
t=$D$tree
install -Dm755 "$bin" "$t/usr/bin/extmerge-initrd"
install -Dm644 "$here/systemd/extmerge-initrd.service" "$t/usr/lib/systemd/system/extmerge-initrd.service"
for u in sysext confext; do
    install -Dm644 "$here/systemd/systemd-$u-sysroot.service.d/50-extmerge.conf" \
        "$t/usr/lib/systemd/system/systemd-$u-sysroot.service.d/50-extmerge.conf"
done
install -Dm644 "$here/mkosi-initrd/50-extmerge.preset" "$t/usr/lib/systemd/initrd-preset/50-extmerge.preset"
install -d "$D$MKOSI_INITRD_DIR/mkosi.conf.d"
sed "s|^ExtraTrees=.*|ExtraTrees=$tree:/|" "$here/mkosi-initrd/mkosi.conf.d/50-extmerge.conf" \
    >"$D$MKOSI_INITRD_DIR/mkosi.conf.d/50-extmerge.conf"
chmod 644 "$D$MKOSI_INITRD_DIR/mkosi.conf.d/50-extmerge.conf"
# bash completion (the file completes extmerge and extmerge-initrd)
install -Dm644 "$here/../completion/extmerge.bash" "$D$BASHCOMPDIR/extmerge-initrd"
# man page, built with scdoc
WITH_MAN=$WITH_MAN sh "$here/../man/install.sh" extmerge-initrd.8 "$D$MANDIR"
echo "installed extmerge-initrd into $D$PREFIX, dracut module into $D$DRACUT_MODULES_DIR," \
    "mkosi-initrd drop-in into $D$MKOSI_INITRD_DIR"
