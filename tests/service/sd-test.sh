#!/bin/sh
# Runs inside the booted Debian root (systemd as PID 1), as sd-test.service, after
# extmerge-generator wrote web.service's drop-in. Prints "EXTMERGE-SD PASS|FAIL name"
# lines, timing lines and "EXTMERGE-SD-DONE" to the console, then powers off.
# (tests/service/run-service-tests.sh builds the root and reads the console.)
. /usr/local/lib/extmerge-tests/guest-lib.sh
D=/etc/systemd/system/web.service.confext.d/web.v
LOG=/run/websvc.log
EXPORT=/run/extmerge/units/web.service
newver() { # N [ID]: web_N with web.conf "vN"
    mkdir -p "$D/web_$1/etc/extension-release.d"
    printf 'ID=%s\nVERSION_ID=12\n' "${2:-debian}" >"$D/web_$1/etc/extension-release.d/extension-release.web"
    echo "v$1" >"$D/web_$1/etc/web.conf"
}
wait_log() { # PATTERN [LOG]: up to 30 s
    l=${2:-$LOG}
    i=0
    while [ $i -lt 300 ]; do
        grep -qx "$1" "$l" 2>/dev/null && return 0
        sleep 0.1; i=$((i + 1))
    done
    echo "no line '$1' in $l: $(tr '\n' '|' <"$l" 2>/dev/null)"
    return 1
}
mainpid() { systemctl show -P MainPID "$1"; }
overlays_on_etc() { awk '$5 == "/etc" && / - overlay /' "/proc/$1/mountinfo" | wc -l; }
etc_mount_id() { awk '$5 == "/etc" { id = $1 } END { print id }' "/proc/$1/mountinfo"; }
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

say "EXTMERGE-SD-BOOT $(systemd-analyze 2>&1 | head -n 1)"
say "EXTMERGE-SD-BEGIN systemd $(systemctl --version | awk 'NR == 1 { print $2 }'), kernel $(uname -r)"
check generator-dropin test -s /run/systemd/generator/web.service.d/00-extmerge.conf
check plain-unit-untouched test ! -e /run/systemd/generator/plain.service.d
check start systemctl start web.service
if [ "$(systemctl is-active web.service)" != active ]; then
    journalctl -u web.service --no-pager -o cat | tail -n 15 | sed 's/^/EXTMERGE-SD-JOURNAL /' >"$con"
    sed 's/^/EXTMERGE-SD-DROPIN /' /run/systemd/generator/web.service.d/00-extmerge.conf >"$con"
fi
check start-sees-v1 wait_log "start: v1"
P=$(mainpid web.service)
check host-etc-untouched test ! -e /etc/web.conf
check service-etc-has-v1 grep -qx v1 "/proc/$P/root/etc/web.conf"
check service-etc-has-host-files test -s "/proc/$P/root/etc/os-release"
check status-in-service sh -c "extmerge --unit=web.service --class=confext status | grep -q web"

# A service with ProtectSystem=strict: /run is read-only in its namespace; the reload
# builds outside and only swaps inside.
SD=/etc/systemd/system/strict.service.confext.d/web.v
SLOG=/run/strict/websvc.log
check strict-start systemctl start strict.service
check strict-sees-v1 wait_log "start: v1" $SLOG
SP=$(mainpid strict.service)
check strict-run-read-only sh -c "! touch /proc/$SP/root/run/extmerge/probe"
mkdir -p "$SD/web_2"
cp -a "$SD/web_1/etc" "$SD/web_2/"
echo v2 >"$SD/web_2/etc/web.conf"
check strict-reload systemctl reload strict.service
check strict-reload-sees-v2 wait_log "reload: v2" $SLOG
check strict-one-overlay test "$(overlays_on_etc "$SP")" = 1
systemctl stop strict.service

journal() { # why a unit's job failed, on the console
    journalctl -u "$1" --no-pager -o cat | tail -n 25 | sed 's/^/EXTMERGE-SD-JOURNAL /' >"$con"
}
newver 2
if systemctl reload web.service >/tmp/reload2.out 2>&1; then
    pass reload-v2
else
    fail reload-v2 "$(tr '\n' '|' </tmp/reload2.out)"
    journal web.service
fi
check reload-sees-v2 wait_log "reload: v2"
check one-overlay-after-reload test "$(overlays_on_etc "$P")" = 1
id_before=$(etc_mount_id "$P")

newver 3 otheros
if systemctl reload web.service >/tmp/reload3.out 2>&1; then
    fail broken-version-fails-reload "systemctl reload succeeded"
else
    pass broken-version-fails-reload
fi
check broken-version-in-journal sh -c "journalctl -u web.service --no-pager | grep -q 'web_3.*does not match'"
sleep 1
check broken-version-not-seen sh -c "! grep -qx 'reload: v3' $LOG"
check broken-version-keeps-etc grep -qx v2 "/proc/$P/root/etc/web.conf"
check broken-version-keeps-mount test "$(etc_mount_id "$P")" = "$id_before"
check service-still-running test "$(systemctl is-active web.service)" = active
rm -rf "$D/web_3"

# The reload round trip, interleaved: web.service (a new version each time), the same
# service without extensions (plain), and with one more command that does nothing
# (floor.service: ExecReload=+/bin/true, the least any refresh command costs).
check start-plain systemctl start plain.service floor.service bound.service
NATIVE=
if [ -e /etc/systemd/system/native.service ]; then
    NATIVE=1
    check start-native systemctl start native.service
fi
# Timed once the boot has finished (else its remaining jobs run alongside).
timeout 180 systemctl is-system-running --wait >/dev/null 2>&1
timed_reload() { # UNIT LOG N: ms until the unit's own handler logged its Nth reload
    t=$(date +%s%N)
    systemctl reload "$1" || return 1
    i=0
    while [ "$(grep -c '^reload:' "$2")" -lt "$3" ] && [ $i -lt 1500 ]; do sleep 0.02; i=$((i + 1)); done
    [ $i -lt 1500 ] && ms "$t"
}
k=0
for n in 4 5 6 7 8; do
    newver $n
    k=$((k + 1))
    # web's reloads so far: v2, then (v3 failed) v4…
    timed_reload web.service "$LOG" $((n - 2)) >>/tmp/t-with
    timed_reload plain.service /run/plain.log $k >>/tmp/t-without
    timed_reload floor.service /run/floor.log $k >>/tmp/t-floor
    timed_reload bound.service /run/bound.log $k >>/tmp/t-bound
    if [ -n "$NATIVE" ]; then
        mkdir -p "/srv/native/web.v/web_$n"
        cp -a /srv/native/web.v/web_1/etc "/srv/native/web.v/web_$n/"
        echo "v$n" >"/srv/native/web.v/web_$n/etc/web.conf"
        timed_reload native.service /run/native.log $k >>/tmp/t-native
    fi
done
check five-reloads-seen wait_log "reload: v8"
check one-overlay-after-five-reloads test "$(overlays_on_etc "$P")" = 1
check export-has-v8 grep -qx v8 "$EXPORT/etc/web.conf"
check plain-reloads-timed test "$(wc -l </tmp/t-without)" = 5
check floor-reloads-timed test "$(wc -l </tmp/t-floor)" = 5
check bound-reloads-timed test "$(wc -l </tmp/t-bound)" = 5
check reloads-timed test "$(wc -l </tmp/t-with)" = 5
samples() { tr '\n' ' ' <"$1"; }
say "EXTMERGE-SD-TIME reload_with_ms=$(median </tmp/t-with) reload_without_ms=$(median </tmp/t-without) reload_own_namespace_ms=$(median </tmp/t-bound) reload_one_more_command_ms=$(median </tmp/t-floor)"
say "EXTMERGE-SD-TIME samples: with=$(samples /tmp/t-with)without=$(samples /tmp/t-without)own_namespace=$(samples /tmp/t-bound)one_more_command=$(samples /tmp/t-floor)"
if [ -n "$NATIVE" ]; then
    check native-reloads-timed test "$(wc -l </tmp/t-native)" = 5
    check native-sees-v8 grep -qx "reload: v8" /run/native.log
    # What systemd's own leaves on the service's /etc after 5 reloads (a fact, not a check).
    say "EXTMERGE-SD-TIME systemd_own_extensions_ms=$(median </tmp/t-native) samples=$(samples /tmp/t-native)overlays_on_its_etc=$(overlays_on_etc "$(mainpid native.service)")"
fi

check stop systemctl stop web.service
check no-export-left sh -c "! grep -q ' $EXPORT/etc ' /proc/self/mountinfo"
check no-overlay-left sh -c "! grep -q ' - overlay confext ' /proc/self/mountinfo"
check no-staging-left sh -c "! ls /run/extmerge | grep -v '^lock' | grep -v '^units$'"
check restart-after-stop systemctl start web.service
check restart-sees-v8 wait_log "start: v8"
# Where a reload's time goes: the commands alone, from this shell (median of 5 each;
# each includes one `date` fork, as the baseline /bin/true does). The export rebuild
# and the reload command do their whole work each time, new version or not.
direct() { # LABEL COMMAND...: LABEL=median ms
    label=$1; shift
    : >/tmp/direct
    for i in 1 2 3 4 5; do t=$(date +%s%N); "$@" >/dev/null 2>&1; ms "$t" >>/tmp/direct; done
    echo "$label=$(median </tmp/direct)"
}
P=$(mainpid web.service)
U="--unit=web.service --class=confext"
say "EXTMERGE-SD-TIME direct: $(direct true /bin/true) $(direct version extmerge --version) \
$(direct noop_refresh extmerge $U --pid="$P" refresh) $(direct export_refresh extmerge $U --pid=1 --export="$EXPORT" refresh) \
$(direct reload_command extmerge $U --pid=1 --export="$EXPORT" --main-pid="$P" refresh)"
check direct-reloads-kept-v8 grep -qx v8 "/proc/$P/root/etc/web.conf"
check direct-reloads-one-overlay test "$(overlays_on_etc "$P")" = 1
systemctl stop web.service plain.service floor.service bound.service
[ -n "$NATIVE" ] && systemctl stop native.service
# Then the manager actions of extension-release, in the same boot (it says DONE and
# powers off).
[ -x /usr/local/bin/sd-actions.sh ] && exec /usr/local/bin/sd-actions.sh
say "EXTMERGE-SD-DONE"
systemctl poweroff --no-block
