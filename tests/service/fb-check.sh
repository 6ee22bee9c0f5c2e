#!/bin/sh
# Runs inside the booted Debian root as fb-check.service, a unit that only the first
# boot's `preset-all` enables (so its running at all proves systemd could write the
# preset links into the merged /etc). Checks a first boot (and, run again, the boot
# after it) of a root whose /etc got a confext from extmerge-initrd before switch-root.
# Prints "EXTMERGE-SD PASS|FAIL name" lines, "EXTMERGE-FB key=value" facts for the host
# to compare across the two boots, "EXTMERGE-SD-DONE", then powers off.
# (tests/service/run-service-tests.sh builds the root and reads the console.)
. /usr/local/lib/extmerge-tests/guest-lib.sh

# Which boot this is: the first one has no /etc/fb-written yet (the check writes it).
if [ -e /etc/fb-written ]; then boot=second; else boot=first; fi
say "EXTMERGE-SD-BEGIN $boot boot, systemd $(systemctl --version | awk 'NR == 1 { print $2 }'), kernel $(uname -r)"
say "EXTMERGE-FB boot=$boot"

# The confext is merged on /etc (by the initrd: this unit runs long after switch-root).
check "$boot-etc-is-overlay" same "$(findmnt -n -o FSTYPE /etc)" overlay
check "$boot-confext-file" same "$(cat /etc/fbconf.conf 2>&1)" "from the confext"
check "$boot-confext-listed" sh -c "extmerge --class=confext status | grep -q fbconf"
# /etc is writable through the overlay, and what is written stays (in the mutable dir).
check "$boot-etc-writable" sh -c "echo written-on-$boot >>/etc/fb-written"
check "$boot-writes-land-in-mutable-dir" test -s /var/lib/extensions.mutable/etc/fb-written

# machine-id: set up by PID 1 on the first boot, a real file (not the bind mount from
# /run that systemd makes over a read-only /etc), the same on the next boot.
mid=$(cat /etc/machine-id)
check "$boot-machine-id-valid" sh -c "echo '$mid' | grep -qxE '[0-9a-f]{32}'"
check "$boot-machine-id-not-transient" sh -c "! findmnt -n /etc/machine-id"
say "EXTMERGE-FB machine_id=$mid"
# ConditionFirstBoot= as systemd saw it: true only on the first boot.
say "EXTMERGE-FB first_boot_condition=$(systemctl show -P ConditionResult fb-firstboot.service)"
# The preset link was written by PID 1 into /etc on the first boot.
check "$boot-preset-link" test -L /etc/systemd/system/multi-user.target.wants/fb-check.service
# Nothing in this boot failed for a read-only /etc.
journalctl -b --no-pager >/tmp/journal.txt 2>&1
check "$boot-no-read-only-etc-errors" sh -c "! grep -i 'read-only file system' /tmp/journal.txt"
grep -iE 'machine.id|preset|read-only|extmerge' /tmp/journal.txt | tail -n 20 | sed 's/^/EXTMERGE-SD-JOURNAL /' >"$con"
if [ "$boot" = second ]; then
    check second-write-of-first-boot-kept grep -qx written-on-first /etc/fb-written
fi
say "EXTMERGE-SD-DONE"
systemctl poweroff --no-block
