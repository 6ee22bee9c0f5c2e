#!/bin/sh
# dracut shell flow (no systemd): the real root is mounted at $NEWROOT. A failed merge
# is logged to the kernel log and the boot goes on (unless extmerge.fatal=1).
/usr/bin/extmerge-initrd --sysroot="${NEWROOT:-/sysroot}" sysroot || {
    if grep -qw 'extmerge.fatal=1' /proc/cmdline; then
        die "extmerge-initrd failed"
    fi
}
