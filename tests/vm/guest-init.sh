#!/bin/sh
# /init of the initramfs tests/vm/vm-run builds (busybox sh as PID 1, never run on the
# host): mounts the API file systems, loads the modules, names the disks, runs the
# program, writes its status and /out as a tar onto the transfer disk, powers off.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
# /tmp gets a tmpfs of its own (overlay upper dirs want a real tmpfs), but what vm-run put
# there (a checkout under /tmp, and so its binaries) must stay visible: copy it over.
mkdir -p /.vm-tmp
mount -t tmpfs -o mode=1777 tmpfs /.vm-tmp
cp -a /tmp/. /.vm-tmp/
mount --move /.vm-tmp /tmp
ln -sf /proc/self/mounts /etc/mtab
hostname vm

# shellcheck source=/dev/null
. /vmrun/config
for m in $VM_MODULES; do
    insmod "/lib/modules/$VM_KVER/$m" || echo "vm-run: insmod $m failed"
done

# The disks, by the serial vm-run gave each (the transfer disk is "vm-xfer").
i=0
while [ "$(ls -d /sys/block/vd* 2>/dev/null | wc -l)" -le "$VM_NDISKS" ] && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
XFER=""
for b in /sys/block/vd*; do
    [ -e "$b" ] || continue
    case $(cat "$b/serial" 2>/dev/null) in
        vm-xfer) XFER=/dev/${b##*/} ;;
        vm-disk*) s=$(cat "$b/serial") && export "VM_DISK${s#vm-disk}=/dev/${b##*/}" ;;
    esac
done
export VM_OUT=/out VM_XFER_DISK="$XFER"
mkdir -p /out
echo "vm-run: kernel $(uname -r), running the program at uptime $(cut -d' ' -f1 /proc/uptime)s"

cd /tmp || exit
/vmrun/program "$@" </dev/null
rc=$?
cd / || exit

echo "vm-run: the program exited with status $rc"
echo "$rc" >/status
sync
if [ -z "$XFER" ] || ! tar -cf "$XFER" status out; then
    echo "vm-run: /out could not be written back (too big for the transfer disk?)"
    [ -z "$XFER" ] || tar -cf "$XFER" status
fi
sync
echo "VM-STATUS=$rc"
poweroff -f
echo o >/proc/sysrq-trigger
sleep 10
