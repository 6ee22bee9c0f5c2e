#!/usr/bin/busybox sh
# /sbin/init of the boot tests' real root (tests/boot/run-boot-tests.sh copies it into
# the ext4 image). The kernel starts it right after switch-root.
#
# Its VERY FIRST act is to record what /etc, /usr and /opt show (sentinels from the
# extensions and from the root itself, extmerge's merge metadata) before anything
# else runs or mounts; only then does it mount /proc etc., add the kernel log, the
# block devices behind the verity DDI (dm and loop devices) and systemd-sysext's view.
# Then it runs the real root's `systemd-sysext unmerge` and records what is left,
# re-executes itself (`--after-unmerge`: its interpreter /usr/bin/busybox was opened
# through the merged /usr and pins that overlay, as a real PID 1 started after
# switch-root would), records whether the dm/loop devices went away, prints the report
# to the console, writes it to the raw report disk /dev/vdb for the host, and powers off.
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
# dm devices by name (/sys/block/dm-*/dm/name), space separated.
dm_names() {
    for n in /sys/block/dm-*/dm/name; do
        [ -r "$n" ] && $B cat "$n"
    done | $B tr '\n' ' ' | $B sed 's/ $//'
}
# The slaves of every dm device: "dm-0:loop0,loop1 ...".
dm_slaves() {
    for d in /sys/block/dm-*; do
        [ -d "$d/slaves" ] && echo "${d##*/}:$($B ls "$d/slaves" | $B tr '\n' ',' | $B sed 's/,$//')"
    done | $B tr '\n' ' ' | $B sed 's/ $//'
}
# Bound loop devices (/sys/block/loopN/loop/ exists only while bound):
# "loopN=BACKING_FILE@OFFSET+SIZELIMIT,autoclear=A,ro=R ...".
loops() {
    for f in /sys/block/loop*/loop/backing_file; do
        [ -r "$f" ] || continue
        d=${f%/loop/backing_file}
        echo "${d##*/}=$($B cat "$f")@$($B cat "$d/loop/offset")+$($B cat "$d/loop/sizelimit"),autoclear=$($B cat "$d/loop/autoclear"),ro=$($B cat "$d/ro")"
    done | $B tr '\n' ' ' | $B sed 's/ $//'
}
# Prints the report to the console and the report disk, powers off.
handover() {
    msg="EXTMERGE-BOOT-REPORT-BEGIN
${rep}EXTMERGE-BOOT-REPORT-END"
    echo "$msg"
    # The whole kernel log goes to the report disk only (the console is slow under TCG).
    { printf '%s\n' "$msg" EXTMERGE-DMESG-BEGIN; $B dmesg; echo EXTMERGE-DMESG-END; } |
        $B dd of=/dev/vdb conv=fsync 2>/dev/null
    $B sync
    $B poweroff -f
}

# ---- 4. after `systemd-sysext unmerge` and the re-exec (see the end of part 3)
if [ "${1:-}" = --after-unmerge ]; then
    rep=$EXTMERGE_BOOT_REP
    unset EXTMERGE_BOOT_REP
    # The overlay is gone once nothing uses it; then dm-verity's deferred removal and the
    # loop devices' autoclear follow. Wait up to 5 s for that.
    i=0
    while [ $i -lt 50 ] && [ -n "$(dm_names)$(loops)" ]; do
        $B sleep 0.1
        i=$((i + 1))
    done
    put reexec_wait_ds "$i"
    put dm_after_reexec "$(dm_names)"
    put loops_after_reexec "$(loops)"
    handover
fi

# ---- 1. what the merged hierarchies show, first thing
put confext_sentinel "$(val /etc/extmerge-test/confext-sentinel)"
put sysext_sentinel "$(val /usr/share/extmerge-test/sysext-sentinel)"
put opt_sentinel "$(val /opt/extmerge-test/opt-sentinel)"
put ddi_sentinel "$(val /usr/share/extmerge-test/ddi-sentinel)"
# The initrd's /.extra DDI (extmerge.extra=sysroot): its backing file was in the initramfs,
# which switch-root emptied.
put extra_sentinel "$(val /usr/share/extmerge-extra/ddi-sentinel)"
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
# extmerge-initrd's boot report, on one line (its newlines and tabs are layout only).
if [ -f /run/extmerge/report.json ]; then
    put report_json "$($B tr -d '\n\t' </run/extmerge/report.json)"
    put report_mode "$($B stat -c '%a %U %F' /run/extmerge/report.json)"
else
    put report_json MISSING
fi

# ---- 2. the rest of the system
[ -r /proc/uptime ] || $B mount -t proc proc /proc
[ -d /sys/kernel ] || $B mount -t sysfs sysfs /sys
[ -c /dev/console ] && [ -b /dev/vdb ] || $B mount -t devtmpfs devtmpfs /dev
# /run moved here with switch-root (it holds extmerge's workspace and boot report): a
# fresh tmpfs only where there is none (busybox's `mountpoint` says no for the moved one).
$B awk '$5 == "/run" { f = 1 } END { exit !f }' /proc/self/mountinfo ||
    $B mount -t tmpfs -o mode=0755 tmpfs /run 2>/dev/null
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
# The verity DDI's block devices: a dm-verity device named <root hash>-verity over two
# loop devices (data and hash tree) bound to /var/lib/extensions/<name>.raw.
put dm_names "$(dm_names)"
put dm_slaves "$(dm_slaves)"
put loops "$(loops)"
# Read again with no page cache: the blocks come from the loop devices' backing files.
$B sync
echo 3 >/proc/sys/vm/drop_caches
put extra_sentinel_uncached "$(val /usr/share/extmerge-extra/ddi-sentinel)"
# The real root's extmerge CLI (when the image carries it): its view of the initrd's report.
if [ -x /usr/bin/extmerge ]; then
    put extmerge_status "$(/usr/bin/extmerge status --no-pager 2>&1 | $B tr '\n' '|')"
    put extmerge_status_json "$(/usr/bin/extmerge status --json=short 2>&1 | $B tr -d '\n')"
fi
if [ ! -x /usr/bin/systemd-sysext ]; then
    handover
fi
put sd_sysext_status "$(SYSTEMD_COLORS=0 /usr/bin/systemd-sysext status --no-pager 2>&1 | $B tr -s ' ' | $B tr '\n' '|')"

# ---- 3. the real root's own systemd-sysext unmerges what extmerge-initrd merged
out=$(SYSTEMD_COLORS=0 SYSTEMD_LOG_LEVEL=debug /usr/bin/systemd-sysext unmerge --no-pager 2>&1)
put sd_unmerge_rc "$?"
put sd_unmerge_out "$(echo "$out" | $B tr '\n' '|')"
for h in /etc /usr /opt; do
    put "mount_${h#/}_after_unmerge" "$($B awk -v m="$h" '$5 == m { l = $0 } END { print l }' /proc/self/mountinfo)"
done
put sysext_sentinel_after_unmerge "$(val /usr/share/extmerge-test/sysext-sentinel)"
put opt_sentinel_after_unmerge "$(val /opt/extmerge-test/opt-sentinel)"
put ddi_sentinel_after_unmerge "$(val /usr/share/extmerge-test/ddi-sentinel)"
put confext_sentinel_after_unmerge "$(val /etc/extmerge-test/confext-sentinel)"
put host_usr_after_unmerge "$(val /usr/share/host-sentinel)"
put usr_meta_list_after_unmerge "$(val /usr/.systemd-sysext/extensions)"
# This process still runs /usr/bin/busybox opened through the merged /usr (MNT_DETACH
# leaves the overlay alive while it is in use): its devices are still there.
put dm_after_unmerge "$(dm_names)"
put loops_after_unmerge "$(loops)"
# Re-exec: /usr/bin/busybox now resolves to the root's own /usr; nothing holds the
# overlay any more.
export EXTMERGE_BOOT_REP="$rep"
exec $B sh /sbin/init --after-unmerge
