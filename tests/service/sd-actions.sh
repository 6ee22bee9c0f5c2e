#!/bin/sh
# Runs inside a booted Debian root (systemd as PID 1) as its test driver, like
# sd-test.sh: the service manager actions of extension-release
# (EXTENSION_RELOAD_MANAGER=, EXTENSION_RESTART_UNITS=, EXTENSION_RELOAD_OR_RESTART_UNITS=)
# after extmerge merge / refresh / unmerge, mirroring systemd's TEST-50-DISSECT checks of
# systemd-sysext 262. Prints "EXTMERGE-SD PASS|FAIL name" lines and "EXTMERGE-SD-DONE" to
# the console, then powers off. tests/service/sd-test.sh runs it when it is done (the
# runner installs both; it needs no web.service).
. /usr/local/lib/extmerge-tests/guest-lib.sh
mainpid() { systemctl show -P MainPID "$1"; }
differ() { [ "$1" != "$2" ] || { echo "both '$1'"; return 1; }; }
active() { systemctl --quiet is-active "$1"; }
inactive() { ! systemctl --quiet is-active "$1"; }
run() { SYSTEMD_LOG_LEVEL=debug extmerge --class=sysext "$@" >>/tmp/extmerge.log 2>&1; }
unit() { # FILE [EXTRA LINE]
    printf '[Service]\nType=simple\nExecStart=/bin/sleep 9999\n%s\n' "${2:-}" >"$1"
}
ext() { # NAME RELEASE-LINES...: /var/lib/extensions/NAME with that extension-release
    e=/var/lib/extensions/$1; shift
    mkdir -p "$e/usr/lib/extension-release.d" "$e/usr/lib/systemd/system"
    printf 'ID=_any\n' >"$e/usr/lib/extension-release.d/extension-release.${e##*/}"
    printf '%s\n' "$@" >>"$e/usr/lib/extension-release.d/extension-release.${e##*/}"
}

say "EXTMERGE-SD-BEGIN systemd $(systemctl --version | awk 'NR == 1 { print $2 }'), kernel $(uname -r)"

# EXTENSION_RESTART_UNITS=: a host unit restarted, the extension's own unit started, and
# stopped on unmerge once its file is gone.
unit /run/systemd/system/act-host.service
systemctl daemon-reload
systemctl start act-host.service
P0=$(mainpid act-host.service)
ext act 'EXTENSION_RESTART_UNITS="act-host.service act-ext.service bad/name"'
unit /var/lib/extensions/act/usr/lib/systemd/system/act-ext.service
check no-reload-merge run --no-reload merge
check no-reload-keeps-host same "$(mainpid act-host.service)" "$P0"
check no-reload-starts-nothing inactive act-ext.service
check no-reload-unmerge run --no-reload unmerge
check merge run merge
P1=$(mainpid act-host.service)
check merge-restarts-host differ "$P1" "$P0"
check merge-starts-ext active act-ext.service
check refresh run refresh --always-refresh=yes
P2=$(mainpid act-host.service)
check refresh-restarts-host differ "$P2" "$P1"
check refresh-keeps-ext active act-ext.service
check unmerge run unmerge
check unmerge-restarts-host differ "$(mainpid act-host.service)" "$P2"
check unmerge-stops-vanished-ext inactive act-ext.service
check invalid-name-warned grep -q "Invalid unit name 'bad/name'" /tmp/extmerge.log
rm -rf /var/lib/extensions/act

# EXTENSION_RELOAD_OR_RESTART_UNITS=: a running unit with ExecReload= is reloaded (same
# PID), a stopped one started.
unit /run/systemd/system/ror-host.service 'ExecReload=/bin/touch /run/ror-host.stamp'
systemctl daemon-reload
systemctl start ror-host.service
R0=$(mainpid ror-host.service)
ext ror 'EXTENSION_RELOAD_OR_RESTART_UNITS="ror-host.service ror-ext.service"'
unit /var/lib/extensions/ror/usr/lib/systemd/system/ror-ext.service
check ror-merge run merge
check ror-reloads-host same "$(mainpid ror-host.service)" "$R0"
check ror-host-stamp test -e /run/ror-host.stamp
check ror-starts-ext active ror-ext.service
check ror-unmerge run unmerge
check ror-stops-vanished-ext inactive ror-ext.service
rm -rf /var/lib/extensions/ror

# EXTENSION_RELOAD_MANAGER=1 alone: the manager has read the extension's drop-in for a
# loaded host unit when merge returns, and forgotten it after unmerge.
printf '[Unit]\nDescription=old\n[Service]\nType=simple\nExecStart=/bin/sleep 9999\n' >/run/systemd/system/rl-host.service
systemctl daemon-reload
ext rl 'EXTENSION_RELOAD_MANAGER=1'
mkdir -p /var/lib/extensions/rl/usr/lib/systemd/system/rl-host.service.d
printf '[Unit]\nDescription=new\n' >/var/lib/extensions/rl/usr/lib/systemd/system/rl-host.service.d/ext.conf
check reload-merge run merge
check reload-applied same "$(systemctl show -P Description rl-host.service)" new
check reload-unmerge run unmerge
check reload-applied-unmerge same "$(systemctl show -P Description rl-host.service)" old
rm -rf /var/lib/extensions/rl

journalctl -b _PID=1 -o short-monotonic --no-pager | grep -iE 'reload|generator|timed out|Failed' | tail -n 30 | sed 's/^/EXTMERGE-SD-JOURNAL pid1: /' >"$con"
grep -E '\(\): |Unit |unit |service manager' /tmp/extmerge.log | sed 's/^/EXTMERGE-SD-JOURNAL /' | tail -n 60 >"$con"
say "EXTMERGE-SD-DONE"
systemctl poweroff --no-block
