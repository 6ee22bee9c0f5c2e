#!/usr/bin/env bash
# Differential test against the newest systemd-sysext (Debian unstable, systemd 262 when
# written), run from a chroot: the same checks as tests/diff/systemd-diff.sh (v252), with
# the expectations of the newer systemd, plus status/list JSON field by field, no-change
# refreshes across the tools, a merge of 102 directory extensions, and the Varlink service
# (io.systemd.sysext) of each tool called by 262's varlinkctl.
#
# The root comes from tests/diff/sid-root.sh (mmdebstrap minbase + systemd, cached as
# target/sid-root). In our private mount namespace, /proc, /sys, /dev, the test's /run
# tmpfs and the work tmpfs are mounted into it at the same paths (the work tmpfs is shared,
# so what is mounted below target/sid-root/$WORK shows up at $WORK too and the other way
# round); `systemd-sysext` is `chroot target/sid-root /usr/bin/systemd-sysext`. extmerge
# runs in the same chroot (a copy of the binary on the work tmpfs): both tools must see
# the same mounts, as on a real host, or the mount IDs in .systemd-sysext/origin (the
# fingerprint of the extensions' file system) could not match.
#
# The fixtures and checks are those of systemd-diff.sh (a copy of its body, kept apart so
# the v252 expectations there stay untouched). Output and exit status as there: `ok`,
# `not ok` with a diff, `ok - ... # known difference: ...`, `N passed, M failed`.
#
# Known differences (printed as such): extmerge's extra .systemd-sysext/extmerge-origin
# and extmerge-stamp;
# 262's status 'since' under --root (the running system's /usr, /opt mtime); 262 failing
# to merge 102 directory sysexts (one lowerdir= string over a page). The no-change refresh
# of the other tool's merge is checked with a known-difference fallback (each tool used to
# remount, not reading the other's origin); it passes when both see the same mounts.
#
# Usage (as root): bash tests/diff/systemd262-diff.sh
#   EXTMERGE=/path/to/extmerge   use this binary instead of `cargo build`'s
#   SID_ROOT=/path               the unstable root (default: target/sid-root, built if needed)
#   With CI set, a root that cannot be built is a failure, not a skip.
set -uo pipefail

# Cannot run here: SKIP for a developer, a failure with CI set.
skip() {
    if [ -n "${CI:-}" ]; then echo "not ok - $* (CI is set: this test must run)"; echo "0 passed, 1 failed"; exit 1; fi
    echo "SKIP: $*"
    exit 0
}
if [ "$(id -u)" != 0 ]; then
    skip "the differential test needs root (mount namespaces, overlayfs)"
fi
if ! command -v unshare >/dev/null || ! command -v jq >/dev/null; then
    skip "needs unshare(1) and jq(1)"
fi

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

if [ -z "${SYSEXT_DIFF_IN_NS:-}" ]; then
    if ! command -v chroot >/dev/null; then skip "needs chroot(8)"; fi
    SIDLOG=$(mktemp)
    if ! bash "$HERE/sid-root.sh" >"$SIDLOG" 2>&1; then
        sed 's/^/#   /' "$SIDLOG"
        rm -f "$SIDLOG"
        skip "could not build or reuse the Debian unstable root (tests/diff/sid-root.sh)"
    fi
    grep '^# ' "$SIDLOG"
    SID_ROOT=$(tail -n1 "$SIDLOG")
    rm -f "$SIDLOG"
    # Keep the root from being rebuilt while we use it (tests/diff/sid-root.sh locks it).
    exec 9>"$SID_ROOT.lock"
    flock -s -w 900 9 || skip "timed out waiting for $SID_ROOT.lock"
    [ -x "$SID_ROOT/usr/bin/systemd-sysext" ] || skip "no systemd-sysext in $SID_ROOT"
    if [ -z "${EXTMERGE:-}" ]; then
        (cd "$REPO" && cargo build --quiet --bin extmerge) || {
            echo "not ok - cargo build of extmerge failed"
            echo "0 passed, 1 failed"
            exit 1
        }
        EXTMERGE=${CARGO_TARGET_DIR:-$REPO/target}/debug/extmerge
    fi
    case $EXTMERGE in /*) ;; *) EXTMERGE=$PWD/$EXTMERGE ;; esac
    if [ ! -x "$EXTMERGE" ]; then
        echo "not ok - extmerge binary $EXTMERGE is not executable"
        echo "0 passed, 1 failed"
        exit 1
    fi
    export EXTMERGE SYSEXT_DIFF_IN_NS=1 SID_ROOT
    exec unshare --mount --propagation private -- "$BASH" "${BASH_SOURCE[0]}" "$@"
fi

# ---------------------------------------------------------------- namespace set-up
# Inside our own mount namespace now; everything was made private by unshare, so
# nothing below reaches the host's mount table.
mount --make-rshared / || { echo "not ok - mount --make-rshared / failed"; echo "0 passed, 1 failed"; exit 1; }
mount -t tmpfs -o mode=0755 diff-run /run || { echo "not ok - tmpfs on /run failed"; echo "0 passed, 1 failed"; exit 1; }
WORK=$(mktemp -d /tmp/sysext-diff.XXXXXX)
mount -t tmpfs -o mode=0755 diff-work "$WORK" || { echo "not ok - tmpfs on $WORK failed"; echo "0 passed, 1 failed"; exit 1; }
# The chroot: the kernel file systems, our /run tmpfs and the work tmpfs at the same paths.
# The binds of /run and $WORK join their (shared) peer groups: mounts propagate both ways.
SD=$WORK/systemd-sysext-sid
EM=$WORK/bin/extmerge
chroot_setup() {
    local S=$SID_ROOT d
    for d in proc sys dev run "${WORK#/}"; do mkdir -p "$S/$d" || return 1; done
    # The chroot's / must be a mount point: 262's image dissection (sd-dissect) makes "/"
    # MS_SLAVE|MS_REC in its own namespace and fails with EINVAL otherwise. Its own peer
    # group, so nothing mounted below it propagates back to the host's tree.
    mount --bind "$S" "$S" && mount --make-private "$S" && mount --make-rshared "$S" &&
        mount -t proc proc "$S/proc" &&
        mount --rbind /sys "$S/sys" &&
        mount --rbind /dev "$S/dev" &&
        mount --bind /run "$S/run" &&
        mount --bind "$WORK" "$S$WORK" || return 1
    printf '#!/bin/sh\nexec chroot %q /usr/bin/systemd-sysext "$@"\n' "$S" >"$SD" && chmod 0755 "$SD" &&
        mkdir -p "$WORK/bin" && cp "$EXTMERGE" "$EM"
}
cleanup() {
    umount -R -l "$SID_ROOT$WORK" 2>/dev/null
    for d in run dev sys proc; do umount -R -l "$SID_ROOT/$d" 2>/dev/null; done
    rmdir "$SID_ROOT$WORK" 2>/dev/null
    umount -l "$SID_ROOT" 2>/dev/null
    rmdir "$SID_ROOT$WORK" 2>/dev/null
    umount -R -l "$WORK" 2>/dev/null
    rmdir "$WORK" 2>/dev/null
}
trap cleanup EXIT
chroot_setup || { echo "not ok - setting up the chroot $SID_ROOT failed"; echo "0 passed, 1 failed"; exit 1; }

# Neither tool may be steered by the caller's environment.
unset SYSTEMD_SYSEXT_HIERARCHIES SYSTEMD_SYSEXT_MUTABLE_MODE SYSTEMD_LOG_LEVEL \
    SYSTEMD_SYSEXT_OVERLAYFS_MOUNT_OPTIONS EXTMERGE_FAIL_AT_STEP EXTMERGE_REPLACE EXTMERGE_LAYERS
export LC_ALL=C SYSTEMD_PAGER=cat SYSTEMD_COLORS=0

echo "# systemd-sysext: $SD ($("$SD" --version | head -n1))"
echo "# extmerge:       $EXTMERGE (run as chroot $SID_ROOT $EM)"

# ---------------------------------------------------------------- reporting
PASS=0
FAIL=0
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---------------------------------------------------------------- running the tools
# sd ROOT ARGS... / em ROOT ARGS...: sets OUT (stdout+stderr) and RC.
sd() {
    local r=$1
    shift
    OUT=$("$SD" --root="$r" "$@" 2>&1)
    RC=$?
}
em() {
    local r=$1
    shift
    OUT=$(chroot "$SID_ROOT" "$EM" --root="$r" --class=sysext "$@" 2>&1)
    RC=$?
}

# ---------------------------------------------------------------- inspection helpers

# Stable description of a tree: type, mode, owner, path, content hash / link target.
# The `dev` file's value necessarily differs (checked separately); extmerge's own
# `extmerge-origin` and `extmerge-stamp` are left out here and reported by their own check.
listing() {
    local d=$1
    if [ ! -e "$d" ]; then
        echo "<missing>"
        return
    fi
    (cd "$d" && {
        find . \( -path ./.systemd-sysext/extmerge-origin -o -path ./.systemd-sysext/extmerge-stamp \) -prune -o -type f ! -path ./.systemd-sysext/dev \
            ! -path ./.systemd-sysext/origin -exec sha256sum {} + | sed 's/^/H /'
        find . \( -path ./.systemd-sysext/extmerge-origin -o -path ./.systemd-sysext/extmerge-stamp \) -prune -o -printf 'E %p\t%y\t%m\t%U:%G\t%l\n'
    } | awk '
        /^H / { h[substr($0, 69)] = substr($2, 1, 16); next }
        {
            split(substr($0, 3), f, "\t")
            x = ""
            if (f[2] == "f") x = (f[1] == "./.systemd-sysext/dev" || f[1] == "./.systemd-sysext/origin") ? " <value checked separately>" : " " h[f[1]]
            if (f[2] == "l") x = " -> " f[5]
            print f[1], f[2], f[3], f[4] x
        }' | sort)
}
# origin JSON with the per-root values (file handles, birth/modification times, mount IDs)
# replaced by their JSON types.
origin_shape() {
    jq -S 'if .extensions then .extensions |= map_values(
        (.fileHandle |= (if . then map_values(type) else . end)) |
        (.crtime |= type) | (.mtime |= type) | (.onMountId |= type)) else . end' "$1" 2>&1
}

sd_without_nodev() { notok "$1: systemd-sysext mount is nodev" "$2"; }
check_metadata_dir() {
    local h=$1
    if [ "$(ls -A "$B/$h/.systemd-sysext" | grep -vx -e extmerge-origin -e extmerge-stamp)" = "$(ls -A "$A/$h/.systemd-sysext")" ] &&
        [ -e "$B/$h/.systemd-sysext/extmerge-origin" ]; then
        known "$h: metadata dir holds the same files (262: dev extensions origin; extmerge: also extmerge-origin, extmerge-stamp)" "extmerge also writes .systemd-sysext/extmerge-origin and extmerge-stamp (its own refresh fingerprint and quick stamp) next to 262's 'origin'; systemd ignores unknown files there"
    else
        check_eq "$h: metadata dir holds the same files" "$(ls -A "$A/$h/.systemd-sysext")" "$(ls -A "$B/$h/.systemd-sysext")"
    fi
    check_eq "$h: origin: same JSON structure and values (handles, birth times, mount IDs name per-root objects: compared by type)" \
        "$(origin_shape "$A/$h/.systemd-sysext/origin")" "$(origin_shape "$B/$h/.systemd-sysext/origin")"
}

# ================================================================ case 1+2: merge
case_merge

case_cross

# ================================================================ probes
echo "# probes: features newer than v252 (compared like everything else against 262)"
# probe NAME BUILDER: merge with both, compare the 'Using' line, the extensions files, the tree.
probe() {
    two_roots "$1" "$2"
    sd "$A" merge
    SD_RC=$RC SD_OUT=$OUT
    em "$B" merge
    EM_RC=$RC EM_OUT=$OUT
    PROBE_USE="$(using_line "$SD_OUT") | $(using_line "$EM_OUT")"
    PROBE_EXT="$(cat "$A/usr/.systemd-sysext/extensions" 2>&1) | $(cat "$B/usr/.systemd-sysext/extensions" 2>&1)"
    check_eq "$1: merge exit status" "$SD_RC" "$EM_RC"
    check_eq "$1: merged /usr listing" "$(listing "$A/usr")" "$(listing "$B/usr")"
}
# probe_names NAME: the image names (Using line and extensions file), with a known
# difference when 262 and extmerge show the pair SD_EXPECT / EM_EXPECT.
probe_names() {
    local sdu emu
    sdu=$(using_line "$SD_OUT")
    emu=$(using_line "$EM_OUT")
    if [ "$sdu" = "$emu" ] && cmp -s "$A/usr/.systemd-sysext/extensions" "$B/usr/.systemd-sysext/extensions"; then
        ok "$1: image names (Using line, extensions file)"
    elif [ -n "${2:-}" ] && [ "$PROBE_USE" = "$2" ] && [ "$PROBE_EXT" = "$3" ]; then
        known "$1: image names (Using line, extensions file): $PROBE_USE" "$4"
    else
        notok "$1: image names (Using line, extensions file)" "systemd-sysext: $sdu / extensions: $(cat "$A/usr/.systemd-sysext/extensions" 2>&1)" \
            "extmerge: $emu / extensions: $(cat "$B/usr/.systemd-sysext/extensions" 2>&1)"
    fi
}
probe vdir make_root_vdir
probe_names ".v directory vee.v/{vee_1,vee_2}"
sd "$A" unmerge
em "$B" unmerge
probe suffix make_root_suffix
probe_names "directory suffix: suf.sysext/ (extension-release.suf), sufx.sysext/ (extension-release.sufx.sysext)"
sd "$A" unmerge
em "$B" unmerge
probe idlike make_root_idlike
probe_names "host ID_LIKE=parentos, extension ID=parentos"
sd "$A" unmerge
em "$B" unmerge
two_roots searchdirs make_root_searchdirs
sd "$A" list --json=short
SD_L=$(printf '%s\n' "$OUT" | jq -r '.[].name' 2>&1 | sort)
em "$B" list --json=short
EM_L=$(printf '%s\n' "$OUT" | jq -r '.[].name' 2>&1 | sort)
check_eq "list: search directories (/usr/lib/extensions, /usr/local/lib/extensions not searched)" "$SD_L" "$EM_L"

# ================================================================ case 4: exit codes
echo "# case 4: exit codes"
two_roots noext make_root_noext
sd "$A" merge
SD_RC=$RC
em "$B" merge
check_eq "merge with no extensions at all: exit status (0)" "0 0" "$SD_RC $RC" expected "systemd extmerge"
check_eq "merge with no extensions at all: nothing mounted" "$(mounts_under "$A")" "$(mounts_under "$B")"
sd "$A" unmerge
SD_RC=$RC
em "$B" unmerge
check_eq "unmerge with nothing merged: exit status (0)" "0 0" "$SD_RC $RC" expected "systemd extmerge"

two_roots incompat make_root_incompat
sd "$A" merge
SD_RC=$RC
em "$B" merge
check_eq "merge with only incompatible extensions: exit status (0)" "0 0" "$SD_RC $RC" expected "systemd extmerge"
check_eq "merge with only incompatible extensions: nothing mounted" "$(mounts_under "$A")" "$(mounts_under "$B")"

two_roots nothing make_root_nothing
sd "$A" merge
SD_RC=$RC SD_OUT=$OUT
em "$B" merge
EM_RC=$RC
if [ "$SD_RC" = "$EM_RC" ]; then
    ok "merge in a root without os-release: exit status ($SD_RC)"
else
    notok "merge in a root without os-release: exit status" "systemd-sysext rc=$SD_RC: $SD_OUT" "extmerge rc=$EM_RC: $OUT"
fi
sd "$A" unmerge
SD_RC=$RC
em "$B" unmerge
check_eq "unmerge in a root without /usr, /opt: exit status (0)" "0 0" "$SD_RC $RC" expected "systemd extmerge"
sd "$WORK/does-not-exist" unmerge
SD_RC=$RC
em "$WORK/does-not-exist" unmerge
if [ "$SD_RC" = "$RC" ]; then
    ok "unmerge with a nonexistent --root: exit status ($RC)"
else
    notok "unmerge with a nonexistent --root: exit status" "systemd-sysext rc=$SD_RC" "extmerge rc=$RC: $OUT"
fi

# ================================================================ case 5: output
# extmerge invoked as systemd-sysext (a symlink: no CLASS column), both tools on the
# same root, so paths and times are the same objects'.
echo "# case 5: output of list and of help values, extmerge invoked as systemd-sysext"
mkdir -p "$WORK/as-sd"
ln -sf "$EM" "$WORK/as-sd/systemd-sysext"
emsd() {
    local r=$1
    shift
    OUT=$(chroot "$SID_ROOT" "$WORK/as-sd/systemd-sysext" --root="$r" "$@" 2>&1)
    RC=$?
}
two_roots output make_root_output
sd "$A" list
SD_OUT=$OUT
emsd "$A" list
# TABLE_TIMESTAMP (weekday first) of a directory's birth time (image_make()).
check_eq "list table, byte for byte (TIME as format_timestamp() of the birth time)" "$SD_OUT" "$OUT"
sd "$A" list --json=short
SD_OUT=$OUT
emsd "$A" list --json=short
check_eq "list --json=short (name, type, path, time)" "$(jq -S . <<<"$SD_OUT" 2>&1)" "$(jq -S . <<<"$OUT" 2>&1)"
sd "$A" list --no-legend
SD_OUT=$OUT
emsd "$A" list --no-legend
check_eq "list --no-legend (columns as wide as their cells)" "$SD_OUT" "$OUT"
SD_OUT=$("$SD" --json=help 2>&1)
SD_RC=$?
OUT=$(chroot "$SID_ROOT" "$WORK/as-sd/systemd-sysext" --json=help 2>&1)
check_eq "--json=help: the values one a line, exit 0" "$SD_RC $SD_OUT" "$? $OUT"
SD_OUT=$("$SD" --mutable=help 2>&1)
SD_RC=$?
OUT=$(chroot "$SID_ROOT" "$WORK/as-sd/systemd-sysext" --mutable=help 2>&1)
RC=$?
check_eq "--mutable=help: output and exit status" "$SD_RC $SD_OUT" "$RC $OUT"

# ================================================================ case 6: JSON, field by field
echo "# case 6: status --json / list --json field by field, both tools on both merges (extmerge invoked as systemd-sysext)"
# fields JSON: one "index.key=value" line per field (arrays of objects), sorted.
fields() { printf '%s\n' "$1" | jq -r 'to_entries[] | .key as $i | .value | to_entries[] | "\($i).\(.key)=\(.value | tojson)"' 2>&1 | sort; }
# sdj / emj ROOT ARGS...: stdout in OUT, stderr in ERR, exit status in RC.
sdj() {
    local r=$1 e
    shift
    e=$(mktemp)
    OUT=$("$SD" --root="$r" "$@" 2>"$e")
    RC=$?
    ERR=$(cat "$e")
    rm -f "$e"
}
emj() {
    local r=$1 e
    shift
    e=$(mktemp)
    OUT=$(chroot "$SID_ROOT" "$WORK/as-sd/systemd-sysext" --root="$r" "$@" 2>"$e")
    RC=$?
    ERR=$(cat "$e")
    rm -f "$e"
}
# The 'since' of 262's status with --root: the modification time of the running system's
# (here: the chroot's) own hierarchy, not of the merged one below --root.
since_is_hosts() {
    printf '%s\n' "$1" | jq -r '.[] | "\(.hierarchy) \(.since / 1000000 | floor)"' 2>/dev/null |
        while read -r h t; do [ "$(stat -c %Y "$SID_ROOT$h")" = "$t" ] || echo no; done | grep -q no && return 1
    return 0
}
two_roots json make_root_main
sd "$A" merge
em "$B" merge
for R in A B; do
    r=${!R}
    by=$([ $R = A ] && echo "systemd's merge" || echo "extmerge's merge")
    for fmt in short pretty; do
        sdj "$r" status --json=$fmt
        SD_RC=$RC SD_OUT=$OUT SD_ERR=$ERR
        emj "$r" status --json=$fmt
        check_eq "status --json=$fmt on $by ($R): exit status" "$SD_RC" "$RC"
        check_eq "status --json=$fmt on $by ($R): stderr" "$SD_ERR" "$ERR"
        SD_F=$(fields "$SD_OUT")
        EM_F=$(fields "$OUT")
        check_eq "status --json=$fmt on $by ($R): fields other than 'since'" "$(grep -v '\.since=' <<<"$SD_F")" "$(grep -v '\.since=' <<<"$EM_F")"
        if [ "$(grep '\.since=' <<<"$SD_F")" = "$(grep '\.since=' <<<"$EM_F")" ]; then
            ok "status --json=$fmt on $by ($R): 'since'"
        elif since_is_hosts "$SD_OUT" && [ "$(printf '%s\n' "$OUT" | jq -r 'map(.since | type) | unique | join(" ")' 2>&1)" = number ]; then
            known "status --json=$fmt on $by ($R): 'since' (262: $(grep '\.since=' <<<"$SD_F" | paste -sd' '); extmerge: $(grep '\.since=' <<<"$EM_F" | paste -sd' '))" \
                "262 reports the modification time of the running system's own /usr, /opt (here the chroot's, built at $(stat -c %Y "$SID_ROOT/usr")) even with --root; extmerge reports the merge below --root"
        else
            SINCE_SD=$(grep '\.since=' <<<"$SD_F" | paste -sd' ')
            SINCE_EM=$(grep '\.since=' <<<"$EM_F" | paste -sd' ')
            notok "status --json=$fmt on $by ($R): 'since'" "systemd-sysext: $SINCE_SD" "extmerge: $SINCE_EM" \
                "birth time of $R/usr/.systemd-sysext: $(stat -c %W "$r/usr/.systemd-sysext" 2>&1)" \
                "mtime of /usr in the chroot: $(stat -c %Y "$SID_ROOT/usr" 2>&1)"
        fi
        if [ $fmt = pretty ]; then
            check_eq "status --json=pretty on $by ($R): text, since values aside" \
                "$(sed 's/"since" : [0-9]*/"since" : N/' <<<"$SD_OUT")" "$(sed 's/"since" : [0-9]*/"since" : N/' <<<"$OUT")"
        fi
        sdj "$r" list --json=$fmt
        SD_OUT=$OUT SD_ERR=$ERR SD_RC=$RC
        emj "$r" list --json=$fmt
        check_eq "list --json=$fmt on $R: exit status" "$SD_RC" "$RC"
        check_eq "list --json=$fmt on $R: stderr" "$SD_ERR" "$ERR"
        check_eq "list --json=$fmt on $R: fields" "$(fields "$SD_OUT")" "$(fields "$OUT")"
        [ $fmt = pretty ] && check_eq "list --json=pretty on $R: text" "$SD_OUT" "$OUT"
    done
done
JA=$A JB=$B
two_roots json-none make_root_noext
for fmt in short pretty; do
    sdj "$A" status --json=$fmt
    SD_OUT=$OUT SD_RC=$RC
    emj "$B" status --json=$fmt
    check_eq "status --json=$fmt with nothing merged: exit status and fields" "$SD_RC $(fields "$SD_OUT")" "$RC $(fields "$OUT")"
done
A=$JA B=$JB
sdj "$A" status
SD_OUT=$OUT
emj "$A" status
check_eq "status table on systemd's merge (SINCE aside)" "$(sed -E 's/ +(Mon|Tue|Wed|Thu|Fri|Sat|Sun) .*//' <<<"$SD_OUT")" "$(sed -E 's/ +(Mon|Tue|Wed|Thu|Fri|Sat|Sun) .*//' <<<"$OUT")"

# ================================================================ case 7: no-change refresh
echo "# case 7: refresh with nothing changed: own merge and the other tool's merge"
mount_id() { MI_P=$(mi_path "$1") awk 'BEGIN { mp = ENVIRON["MI_P"] } $5 == mp { id = $1 } END { print id }' /proc/self/mountinfo; }
ids() { echo "$(mount_id "$1/usr") $(mount_id "$1/opt")"; }
ID_A=$(ids "$A") ID_B=$(ids "$B")
sd "$A" refresh
check_eq "systemd-sysext no-change refresh of its own merge: skipped, mounts kept" \
    "0 Skipping extension refresh because no change was found, use --always-refresh=yes to always do a refresh. $ID_A" "$RC $OUT $(ids "$A")" expected systemd-sysext
em "$B" refresh
check_eq "extmerge no-change refresh of its own merge: skipped, mounts kept" \
    "0 $ID_B" "$RC $(ids "$B")" expected extmerge
check_eq "no-change refresh of its own merge: message" \
    "Skipping extension refresh because no change was found, use --always-refresh=yes to always do a refresh." "$OUT"
# Each tool reads the other's `origin` (systemd >= 260 writes it; extmerge writes it
# too): a no-change refresh of the other tool's merge is skipped, the mounts kept.
em "$A" refresh
check_eq "extmerge no-change refresh of systemd's merge: skipped, mounts kept" \
    "0 $ID_A" "$RC $(ids "$A")" expected extmerge
sd "$B" refresh
check_eq "systemd-sysext no-change refresh of extmerge's merge: skipped, mounts kept" \
    "0 $ID_B" "$RC $(ids "$B")" expected systemd-sysext
check_eq "after the cross refreshes: same mounts" "$(mounts_under "$A")" "$(mounts_under "$B")" "A (refreshed by extmerge)" "B (refreshed by systemd-sysext)"
check_eq "after the cross refreshes: same /usr" "$(listing "$A/usr")" "$(listing "$B/usr")" "A (refreshed by extmerge)" "B (refreshed by systemd-sysext)"
sd "$B" unmerge
check_eq "systemd-sysext unmerge after the cross refresh" "0|" "$RC|$(mounts_under "$B")" expected systemd-sysext
em "$A" unmerge
check_eq "extmerge unmerge after the cross refresh" "0|" "$RC|$(mounts_under "$A")" expected extmerge

# ================================================================ case 8: many extensions
echo "# case 8: 60 and 102 directory extensions (262's one lowerdir= string for 102 is over a page)"
make_root_many() {
    local r=$1 i n
    host_base "$r"
    for i in $(seq 1 "$MANY"); do
        n=$(printf 'many-extension-%03d' "$i")
        ext "$r" "var/lib/extensions/$n" "$n" "$LVL"
        put "$r/var/lib/extensions/$n/usr/share/many/$n" "$i"
        put "$r/var/lib/extensions/$n/usr/share/many-top" "$n"
    done
}
for MANY in 60 102; do
    two_roots "many$MANY" make_root_many
    sd "$A" merge
    SD_RC=$RC SD_OUT=$OUT
    em "$B" merge
    EM_RC=$RC EM_OUT=$OUT
    EXP=$(printf '%s\n' "$MANY" "many-extension-$(printf %03d "$MANY")")
    check_eq "$MANY extensions: extmerge merges them all (exit status, files, top layer)" "0 $EXP" \
        "$EM_RC $(ls "$B/usr/share/many" 2>&1 | wc -l)
$(cat "$B/usr/share/many-top" 2>&1)" expected extmerge
    [ "$EM_RC" = 0 ] || notok "$MANY extensions: extmerge merge" "$EM_OUT"
    if [ "$SD_RC" = 0 ]; then
        check_eq "$MANY extensions: merged /usr the same" "$(listing "$A/usr")" "$(listing "$B/usr")"
        check_eq "$MANY extensions: number of lower layers" "$(layers "$(field "$(mount_at "$A/usr" | tail -n1)" 5)")" \
            "$(layers "$(field "$(mount_at "$B/usr" | tail -n1)" 5)")"
    elif [ "$MANY" -ge 102 ] && [ "$SD_RC" = 1 ] && [ "$EM_RC" = 0 ]; then
        known "$MANY extensions: systemd-sysext 262 fails (exit 1: '$(printf '%s\n' "$SD_OUT" | grep -o '^Failed to mount sysext (type overlay) on [^ ]*')' for a lowerdir= of $((37 + MANY * 54)) bytes; '$(printf '%s\n' "$SD_OUT" | tail -n1)'), extmerge merges" \
            "262 passes all layers in one lowerdir= option, which is over a page (4096 bytes) for 102 directory sysexts, and the kernel's fsconfig/mount refuses it; extmerge adds layers one by one with lowerdir+ (or stacks them) and must keep working"
    else
        notok "$MANY extensions: systemd-sysext merge" "rc=$SD_RC: $SD_OUT"
    fi
    # The other tool's merge is unmerged cleanly by each.
    sd "$B" unmerge
    check_eq "$MANY extensions: systemd-sysext unmerges extmerge's merge" "0|" "$RC|$(mounts_under "$B")" expected systemd-sysext
    em "$A" unmerge
    check_eq "$MANY extensions: extmerge unmerge (of systemd's merge if any)" "0|" "$RC|$(mounts_under "$A")" expected extmerge
done

# ================================================================ case 9: erofs images
echo "# case 9: an erofs image and a directory extension (loop device, no device-mapper)"
make_root_erofs() {
    local r=$1 src=$WORK/erofs-src
    host_base "$r"
    rm -rf "$src"
    ext "$src" . ero "$LVL"
    put "$src/usr/share/ero" ero
    put "$src/usr/share/common" ero
    mkfs.erofs --quiet -T0 --all-root "$r/var/lib/extensions/ero.raw" "$src" >/dev/null || return 1
    ext "$r" var/lib/extensions/zdir zdir "$LVL"
    put "$r/var/lib/extensions/zdir/usr/share/common" zdir
}
if ! command -v mkfs.erofs >/dev/null; then
    notok "erofs: mkfs.erofs (erofs-utils, tests/deps.sh) is not installed"
else
    two_roots erofs make_root_erofs
    sd "$A" merge
    SD_RC=$RC SD_OUT=$OUT
    em "$B" merge
    EM_RC=$RC EM_OUT=$OUT
    check_eq "erofs: merge exit status" "$SD_RC" "$EM_RC"
    check_eq "erofs: hierarchies mounted" "$(mounts_under "$A")" "$(mounts_under "$B")"
    check_eq "erofs: extensions file" "$(cat "$A/usr/.systemd-sysext/extensions" 2>&1)" "$(cat "$B/usr/.systemd-sysext/extensions" 2>&1)"
    check_eq "erofs: merged /usr listing" "$(listing "$A/usr")" "$(listing "$B/usr")"
    check_eq "erofs: origin structure" "$(origin_shape "$A/usr/.systemd-sysext/origin")" "$(origin_shape "$B/usr/.systemd-sysext/origin")"
    check_eq "erofs: 'Using extensions' line" "$(using_line "$SD_OUT")" "$(using_line "$EM_OUT")"
    sdj "$A" list --json=short
    SD_OUT=$OUT
    emj "$A" list --json=short
    check_eq "erofs: list --json=short fields (same root)" "$(fields "$SD_OUT")" "$(fields "$OUT")"
    ID_A=$(ids "$A") ID_B=$(ids "$B")
    em "$A" refresh
    EM_X="$RC $(ids "$A")"
    sd "$B" refresh
    SD_X="$RC $(ids "$B")"
    if [ "$EM_X $SD_X" = "0 $ID_A 0 $ID_B" ]; then
        ok "erofs: no-change refresh of the other tool's merge: skipped by both"
    else
        known "erofs: no-change refresh of the other tool's merge: skipped by both (extmerge on 262's: '$ID_A' -> '$EM_X', 262 on extmerge's: '$ID_B' -> '$SD_X')" "$XKNOWN"
    fi
    sd "$B" unmerge
    check_eq "erofs: systemd-sysext unmerges extmerge's merge" "0|" "$RC|$(mounts_under "$B")" expected systemd-sysext
    em "$A" unmerge
    check_eq "erofs: extmerge unmerges systemd's merge" "0|" "$RC|$(mounts_under "$A")" expected extmerge
fi

# ================================================================ case 10: .v/ picking
echo "# case 10: .v/ directories: version characters, wrong-type entries (262's vpick)"
make_root_vpick() {
    local r=$1 e n
    host_base "$r"
    e=$r/var/lib/extensions
    # ',' is no version character (UAPI.10), '~' is; '+x' is no tries counter; a '_'
    # inside the version stays; a regular file in a directory .v is passed over.
    for n in foo.v/foo_1 foo.v/foo_1,5 bar.v/bar_1 bar.v/bar_2~rc1 baz.v/baz_1 baz.v/baz_1+x \
        qux.v/qux_1 qux.v/qux_1_2 wt.v/wt_1; do
        ext "$e" "$n" "${n%%.v/*}" "$LVL"
    done
    put "$e/wt.v/wt_2" "not a directory"
}
two_roots vpick make_root_vpick
picked() { printf '%s\n' "$1" | jq -r '.[].path' 2>&1 | sed "s|^$2/||" | sort; }
sd "$A" list --json=short
SD_PICKED=$(picked "$OUT" "${A#"$SID_ROOT"}")
em "$B" list --json=short
check_eq "vpick: the entries picked from each .v/" "$SD_PICKED" "$(picked "$OUT" "${B#"$SID_ROOT"}")"
check_eq "vpick: systemd 262 picks as expected" \
    $'var/lib/extensions/bar.v/bar_2~rc1\nvar/lib/extensions/baz.v/baz_1\nvar/lib/extensions/foo.v/foo_1\nvar/lib/extensions/qux.v/qux_1_2\nvar/lib/extensions/wt.v/wt_1' \
    "$SD_PICKED" expected systemd-sysext

# ================================================================ Varlink
# Both tools as systemd-sysext.socket starts them (Accept=yes, fd name varlink) on two
# identical roots, each called by 262's own varlinkctl with the same calls: replies and
# exit codes compared with the roots' paths made equal (and the directories' birth times
# left out: the roots were made at different times), the merged trees compared as in
# case 1. GetInfo's vendor and product differ by design; its interfaces must not.
echo "# Varlink: io.systemd.sysext served by each tool (A: systemd-sysext, B: extmerge), called by 262's varlinkctl"
two_roots varlink make_root_output
VL_SD=$WORK/vl-sd.sock
VL_EM=$WORK/vl-em.sock
systemd-socket-activate --accept --fdname=varlink -l "$VL_SD" -- \
    chroot "$SID_ROOT" /usr/bin/systemd-sysext --root="$A" >/dev/null 2>&1 &
VL_PIDS=$!
systemd-socket-activate --accept --fdname=varlink -l "$VL_EM" -- \
    chroot "$SID_ROOT" "$EM" --root="$B" >/dev/null 2>&1 &
VL_PIDS="$VL_PIDS $!"
for _ in $(seq 100); do [ -S "$VL_SD" ] && [ -S "$VL_EM" ] && break; sleep 0.1; done
# vl SOCKET ROOT ARGS...: varlinkctl ARGS with SOCKET's path after the verb's options;
# sets OUT (stdout+stderr, ROOT written as ROOT, times dropped, lines sorted) and RC.
vl() {
    local sock=$1 root=$2 verb=$3
    shift 3
    OUT=$(chroot "$SID_ROOT" varlinkctl "$verb" --json=short "$@" 2>&1 | sed "s|$sock|SOCKET|g")
    RC=${PIPESTATUS[0]}
    OUT=$(printf '%s\n' "$OUT" | sed "s|$root|ROOT|g; s|\"CreationTimestamp\":[0-9]*|\"CreationTimestamp\":T|" | sort)
}
# vl_call DESC [--more] @ METHOD PARAMS: both tools answer alike (@: each one's socket).
vl_call() {
    local desc=$1 sd_out a
    shift
    local sd_args=() em_args=()
    for a in "$@"; do
        if [ "$a" = @ ]; then sd_args+=("$VL_SD"); em_args+=("$VL_EM"); else sd_args+=("$a"); em_args+=("$a"); fi
    done
    vl "$VL_SD" "$A" call "${sd_args[@]}"
    sd_out="$OUT rc=$RC"
    vl "$VL_EM" "$B" call "${em_args[@]}"
    check_eq "Varlink: $desc" "$sd_out" "$OUT rc=$RC"
}
vl "$VL_SD" "$A" introspect "$VL_SD" io.systemd.sysext
SD_IDL=$OUT
vl "$VL_EM" "$B" introspect "$VL_EM" io.systemd.sysext
check_eq "Varlink: the io.systemd.sysext interface description" "$SD_IDL" "$OUT"
vl "$VL_EM" "$B" call "$VL_EM" org.varlink.service.GetInfo '{}'
OUT_EM=$(printf '%s\n' "$OUT" | jq -c .interfaces 2>&1)
vl "$VL_SD" "$A" call "$VL_SD" org.varlink.service.GetInfo '{}'
check_eq "Varlink: GetInfo lists the same interfaces" "$(printf '%s\n' "$OUT" | jq -c .interfaces 2>&1)" "$OUT_EM"
vl_call "List, streamed with more" --more @ io.systemd.sysext.List '{}'
vl_call "List without more" @ io.systemd.sysext.List '{}'
vl_call "List of a class without extensions" --more @ io.systemd.sysext.List '{"class":"confext"}'
vl_call "an unknown class" --more @ io.systemd.sysext.List '{"class":"usr"}'
vl_call "a parameter of the wrong type" @ io.systemd.sysext.Merge '{"force":"yes"}'
vl_call "an unknown parameter" @ io.systemd.sysext.Unmerge '{"force":true}'
vl_call "an unknown method" @ io.systemd.sysext.Nope '{}'
vl_call "Merge" @ io.systemd.sysext.Merge '{}'
check_eq "Varlink: the trees Merge made" "$(listing "$A/usr")" "$(listing "$B/usr")"
vl_call "Merge of a merged hierarchy: AlreadyMerged" @ io.systemd.sysext.Merge '{"noReload":true}'
ext "$A" var/lib/extensions/three three "$LVL"
ext "$B" var/lib/extensions/three three "$LVL"
vl_call "Refresh" @ io.systemd.sysext.Refresh '{"alwaysRefresh":true}'
check_eq "Varlink: the trees Refresh made" "$(listing "$A/usr")" "$(listing "$B/usr")"
vl_call "Unmerge" @ io.systemd.sysext.Unmerge '{}'
check_eq "Varlink: nothing mounted after Unmerge" "$(mounts_under "$A" | sed "s|$A|ROOT|g")" "$(mounts_under "$B" | sed "s|$B|ROOT|g")"
vl_call "sysupdate's OnCompletedUpdate" @ io.systemd.SysUpdate.Notify.OnCompletedUpdate '{"component":"x"}'
check_eq "Varlink: the trees OnCompletedUpdate made" "$(listing "$A/usr")" "$(listing "$B/usr")"
vl_call "Unmerge after OnCompletedUpdate" @ io.systemd.sysext.Unmerge '{}'
# shellcheck disable=SC2086 # two PIDs
kill $VL_PIDS 2>/dev/null
wait

# ================================================================ leftovers
check_eq "no sysext overlay or staging tmpfs left anywhere in the namespace" "" \
    "$(awk '{ for (i = 7; $i != "-"; i++) ; if ($(i + 2) == "sysext") print $5, $(i + 1) }' /proc/self/mountinfo)" \
    expected found
check_eq "no loop device left on the test's images" "" "$(losetup -a 2>/dev/null | grep -F "$WORK/")" expected found

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
