#!/bin/sh
# dracut shell flow (no systemd): the real root is mounted at $NEWROOT. extmerge-initrd
# logs a failed merge to the kernel log and exits 0 so the boot goes on, unless
# extmerge.fatal=1 is on the kernel command line: then it fails and so does the boot.
if ! /usr/bin/extmerge-initrd --sysroot="${NEWROOT:-/sysroot}" sysroot; then
    die "extmerge-initrd: merging extensions failed (extmerge.fatal=1)"
fi
