#!/usr/bin/busybox sh
# /sbin/init of the boot tests' real root (tests/boot/run-boot-tests.sh copies it into
# the ext4 image). The kernel starts it right after switch-root.
#
# Its VERY FIRST act is to record what /etc, /usr and /opt show (sentinels from the
# extensions and from the root itself, extmerge's merge metadata) before anything
# else runs or mounts; only then does it mount /proc etc., add the kernel log and
# systemd-sysext's view, print the report to the console, write it to the raw report
# disk /dev/vdb for the host, and power off.
B=/usr/bin/busybox
rep=""
put() { rep="$rep$1=$2
"; }
val() {
    if [ -f "$1" ]; then
        $B head -c 300 "$1" | $B tr '\n' ' ' | $B sed 's/ $//'
    elif [ -e "$1" ] || [ -L "$1" ]; then
        echo "NOT-A-FILE"
    else
        echo MISSING
    fi
}

# ---- 1. what the merged hierarchies show, first thing
put confext_sentinel "$(val /etc/extmerge-test/confext-sentinel)"
put sysext_sentinel "$(val /usr/share/extmerge-test/sysext-sentinel)"
put opt_sentinel "$(val /opt/extmerge-test/opt-sentinel)"
put broken_sentinel "$(val /usr/share/extmerge-test/broken-sentinel)"
put otheros_sentinel "$(val /usr/share/extmerge-test/otheros-sentinel)"
put host_etc "$(val /etc/host-sentinel)"
put host_usr "$(val /usr/share/host-sentinel)"
put host_os_release "$(val /etc/os-release)"
for spec in etc:confext:confexts usr:sysext:extensions opt:sysext:extensions; do
    h=${spec%%:*}; rest=${spec#*:}; cls=${rest%%:*}; list=${rest#*:}
    put "${h}_meta_list" "$(val "/$h/.systemd-$cls/$list")"
    put "${h}_meta_dev" "$(val "/$h/.systemd-$cls/dev")"
    # st_dev of the hierarchy as major:minor (glibc's encoding), to compare with `dev`.
    d=$($B stat -c %d "/$h" 2>/dev/null || echo 0)
    put "${h}_stat_dev" "$(( ((d >> 8) & 0xfff) | ((d >> 32) & ~0xfff) )):$(( (d & 0xff) | ((d >> 12) & ~0xff) ))"
done
# extmerge-initrd's marker for systemd's own sysroot units, and what else is left in its
# workspace (/run moves into the real root with switch-root).
[ -e /run/extmerge/sysroot-merged ] && put run_marker present || put run_marker MISSING
put run_workspace "$($B ls -A /run/extmerge 2>/dev/null | $B tr '\n' ' ' | $B sed 's/ $//')"

# ---- 2. the rest of the system
[ -r /proc/uptime ] || $B mount -t proc proc /proc
[ -d /sys/kernel ] || $B mount -t sysfs sysfs /sys
[ -c /dev/console ] && [ -b /dev/vdb ] || $B mount -t devtmpfs devtmpfs /dev
$B mountpoint -q /run || $B mount -t tmpfs -o mode=0755 tmpfs /run 2>/dev/null
exec </dev/console >/dev/console 2>&1
up=$($B cut -d' ' -f1 /proc/uptime)
echo "EXTMERGE-BOOT-INIT uptime=$up"   # the host times the boot up to this line
put init_uptime "$up"
put cmdline "$($B cat /proc/cmdline)"
for h in / /etc /usr /opt; do
    # mountinfo: id parent major:minor root mountpoint options ... - fstype source superopts
    put "mount_${h#/}" "$($B awk -v m="$h" '$5 == m { l = $0 } END { print l }' /proc/self/mountinfo)"
done
put workspace_mounts "$($B awk '$5 ~ /extmerge/' /proc/self/mountinfo | $B wc -l)"
# kernel-log milestones (seconds since kernel start): initrd's /init, merge done, switch-root
put t_run_init "$($B dmesg | $B sed -n 's/^\[ *\([0-9.]*\)\] Run \/init as init process.*/\1/p' | $B head -n1)"
put t_extmerge_done "$($B dmesg | $B sed -n 's/^\[ *\([0-9.]*\)\] extmerge-initrd: done in.*/\1/p' | $B head -n1)"
put kmsg_systemd_lines "$($B dmesg | $B grep -c 'systemd\[1\]')"
put kmsg_extmerge "$($B dmesg | $B grep 'extmerge-initrd' | $B sed 's/^\[[ 0-9.]*\] //' | $B tr '\n' '|')"
if [ -x /usr/bin/systemd-sysext ]; then
    put sd_sysext_status "$(SYSTEMD_COLORS=0 /usr/bin/systemd-sysext status --no-pager 2>&1 | $B tr -s ' ' | $B tr '\n' '|')"
fi

# ---- 3. hand it over
msg="EXTMERGE-BOOT-REPORT-BEGIN
${rep}EXTMERGE-BOOT-REPORT-END"
echo "$msg"
# The whole kernel log goes to the report disk only (the console is slow under TCG).
{ printf '%s\n' "$msg" EXTMERGE-DMESG-BEGIN; $B dmesg; echo EXTMERGE-DMESG-END; } |
    $B dd of=/dev/vdb conv=fsync 2>/dev/null
$B sync
$B poweroff -f
