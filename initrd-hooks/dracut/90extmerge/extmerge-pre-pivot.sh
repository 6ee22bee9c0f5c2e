#!/bin/sh
# dracut shell flow (no systemd): the real root is mounted at $NEWROOT. extmerge-initrd
# logs a failed merge to the kernel log and exits 0 so the boot goes on, unless a
# required extension (extmerge.require=, Require= in the real root's
# /etc/extmerge/initrd.conf) is not merged or extmerge.fatal=1 is on the kernel command
# line: then it fails, naming the extension and the reason, and so does the boot.
if ! /usr/bin/extmerge-initrd --sysroot="${NEWROOT:-/sysroot}" sysroot; then
    die "extmerge-initrd: a required extension is not merged or a merge failed (extmerge.fatal=1); see the messages above"
fi
