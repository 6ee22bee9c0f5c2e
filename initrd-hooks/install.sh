#!/bin/sh
# Installs extmerge-initrd and its integration for dracut, mkosi-initrd and systemd.
# Usage: initrd-hooks/install.sh [BINARY]   (PREFIX=/usr, DESTDIR= honoured)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../target/x86_64-unknown-linux-gnu/initrd/extmerge-initrd}
PREFIX=${PREFIX:-/usr}
D=${DESTDIR:-}
install -Dm755 "$bin" "$D$PREFIX/bin/extmerge-initrd"
# dracut
m=$D$PREFIX/lib/dracut/modules.d/90extmerge
install -Dm755 "$here/dracut/90extmerge/module-setup.sh" "$m/module-setup.sh"
install -Dm755 "$here/dracut/90extmerge/extmerge-pre-pivot.sh" "$m/extmerge-pre-pivot.sh"
install -Dm644 "$here/systemd/extmerge-initrd.service" "$m/extmerge-initrd.service"
for u in sysext confext; do
    install -Dm644 "$here/systemd/systemd-$u-sysroot.service.d/50-extmerge.conf" \
        "$m/systemd-$u-sysroot.service.d/50-extmerge.conf"
done
# mkosi-initrd: the drop-in and the tree it adds
install -Dm644 "$here/mkosi-initrd/mkosi.conf.d/50-extmerge.conf" \
    "$D$PREFIX/lib/mkosi-initrd/mkosi.conf.d/50-extmerge.conf"
t=$D$PREFIX/lib/extmerge/initrd-tree
install -Dm755 "$bin" "$t/usr/bin/extmerge-initrd"
install -Dm644 "$here/systemd/extmerge-initrd.service" "$t/usr/lib/systemd/system/extmerge-initrd.service"
for u in sysext confext; do
    install -Dm644 "$here/systemd/systemd-$u-sysroot.service.d/50-extmerge.conf" \
        "$t/usr/lib/systemd/system/systemd-$u-sysroot.service.d/50-extmerge.conf"
done
install -Dm644 "$here/mkosi-initrd/50-extmerge.preset" "$t/usr/lib/systemd/initrd-preset/50-extmerge.preset"
