#!/usr/bin/env bash
# Differential test: Debian's systemd-sysext (v252) against extmerge, sysext class,
# directory extensions only.
#
# Method: every case builds two identical fixture roots with the same function
# (A and B, temp dirs on a private tmpfs). A is merged by `systemd-sysext --root=A`,
# B by `extmerge --root=B --class=sysext`; the results are compared. The cross
# checks (unmerge/refresh/merge of the other tool's merge) then run on those roots.
# Nothing outside the temp roots is touched: the script re-execs itself under
# `unshare -m` (private copy of the mount table), makes `/` rshared there (v252
# merges in a child mount namespace and its result only reaches ours by
# propagation) and puts a tmpfs on /run (v252's and extmerge's workspaces).
#
# Output: `ok - ...` / `not ok - ...` (with a diff) per check, `N passed, M failed`
# at the end, exit status 1 if M > 0. Differences that are explained by v252 being
# older than the systemd behaviour extmerge implements are printed as
# `ok - ... # known difference: ...`.
#
# Usage (as root): bash tests/diff/systemd-diff.sh
#   EXTMERGE=/path/to/extmerge   use this binary instead of `cargo build`'s
#   SYSTEMD_SYSEXT=/path         use this systemd-sysext (default: from $PATH)
set -uo pipefail

# Cannot run here: SKIP for a developer, a failure with CI set.
skip() {
    if [ -n "${CI:-}" ]; then echo "not ok - $* (CI is set: this test must run)"; echo "0 passed, 1 failed"; exit 1; fi
    echo "SKIP: $*"
    exit 0
}
SD=${SYSTEMD_SYSEXT:-$(command -v systemd-sysext || true)}
if [ -z "$SD" ] || [ ! -x "$SD" ]; then
    skip "systemd-sysext not installed"
fi
if [ "$(id -u)" != 0 ]; then
    skip "the differential test needs root (mount namespaces, overlayfs)"
fi
if ! command -v unshare >/dev/null || ! command -v jq >/dev/null; then
    skip "needs unshare(1) and jq(1)"
fi

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

if [ -z "${SYSEXT_DIFF_IN_NS:-}" ]; then
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
    export EXTMERGE SYSEXT_DIFF_IN_NS=1 SYSTEMD_SYSEXT=$SD
    exec unshare --mount --propagation private -- "$BASH" "${BASH_SOURCE[0]}" "$@"
fi

# ---------------------------------------------------------------- namespace set-up
# Inside our own mount namespace now; everything was made private by unshare, so
# nothing below reaches the host's mount table.
mount --make-rshared / || { echo "not ok - mount --make-rshared / failed"; echo "0 passed, 1 failed"; exit 1; }
mount -t tmpfs -o mode=0755 diff-run /run || { echo "not ok - tmpfs on /run failed"; echo "0 passed, 1 failed"; exit 1; }
WORK=$(mktemp -d /tmp/sysext-diff.XXXXXX)
mount -t tmpfs -o mode=0755 diff-work "$WORK" || { echo "not ok - tmpfs on $WORK failed"; echo "0 passed, 1 failed"; exit 1; }
cleanup() {
    umount -R -l "$WORK" 2>/dev/null
    rmdir "$WORK" 2>/dev/null
}
trap cleanup EXIT

# Neither tool may be steered by the caller's environment.
unset SYSTEMD_SYSEXT_HIERARCHIES SYSTEMD_SYSEXT_MUTABLE_MODE SYSTEMD_LOG_LEVEL \
    SYSTEMD_SYSEXT_OVERLAYFS_MOUNT_OPTIONS EXTMERGE_FAIL_AT_STEP EXTMERGE_REPLACE EXTMERGE_LAYERS
export LC_ALL=C SYSTEMD_PAGER=cat SYSTEMD_COLORS=0

echo "# systemd-sysext: $SD ($("$SD" --version | head -n1))"
echo "# extmerge:       $EXTMERGE"

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
    OUT=$("$EXTMERGE" --root="$r" --class=sysext "$@" 2>&1)
    RC=$?
}

# ---------------------------------------------------------------- inspection helpers

# Stable description of a tree: type, mode, owner, path, content hash / link target.
# The `dev` file's value necessarily differs (checked separately); extmerge's own
# `extmerge-origin` and `extmerge-stamp` and the `origin` it writes as systemd >= 260
# does (v252 writes none of them) are left out here and reported by their own check.
listing() {
    local d=$1
    if [ ! -e "$d" ]; then
        echo "<missing>"
        return
    fi
    (cd "$d" && {
        find . \( -path ./.systemd-sysext/extmerge-origin -o -path ./.systemd-sysext/extmerge-stamp -o -path ./.systemd-sysext/origin \) -prune \
            -o -type f ! -path ./.systemd-sysext/dev -exec sha256sum {} + | sed 's/^/H /'
        find . \( -path ./.systemd-sysext/extmerge-origin -o -path ./.systemd-sysext/extmerge-stamp -o -path ./.systemd-sysext/origin \) -prune \
            -o -printf 'E %p\t%y\t%m\t%U:%G\t%l\n'
    } | awk '
        /^H / { h[substr($0, 69)] = substr($2, 1, 16); next }
        {
            split(substr($0, 3), f, "\t")
            x = ""
            if (f[2] == "f") x = (f[1] == "./.systemd-sysext/dev") ? " <value checked separately>" : " " h[f[1]]
            if (f[2] == "l") x = " -> " f[5]
            print f[1], f[2], f[3], f[4] x
        }' | sort)
}

# v252 mounts the overlay with MS_RDONLY only.
sd_without_nodev() {
    known "$1: systemd-sysext mount is nodev" "v252 mounts the overlay with MS_RDONLY only; newer systemd (v257 source: default_mount_flags = MS_RDONLY|MS_NODEV) adds nodev, as extmerge does"
}
check_metadata_dir() {
    local h=$1
    if [ -e "$B/$h/.systemd-sysext/extmerge-origin" ] && [ ! -e "$A/$h/.systemd-sysext/extmerge-origin" ] &&
        [ "$(ls -A "$A/$h/.systemd-sysext")" = "$(ls -A "$B/$h/.systemd-sysext" | grep -vx -e extmerge-origin -e extmerge-stamp -e origin)" ]; then
        known "$h: metadata dir holds the same files" "extmerge adds .systemd-sysext/extmerge-origin and extmerge-stamp (its own refresh fingerprint and quick stamp, src/inspect/metadata.rs FINGERPRINT_FILE, STAMP_FILE) and 'origin' as systemd v260+ writes it (SYSTEMD_ORIGIN_FILE); v252 writes neither and ignores unknown files there"
    else
        check_eq "$h: metadata dir holds the same files" "$(ls -A "$A/$h/.systemd-sysext")" "$(ls -A "$B/$h/.systemd-sysext")"
    fi
}

# ================================================================ case 1+2: merge
case_merge

SD_MODE_0755_KNOWN="v252 creates the metadata layer (the overlay's top layer) 0755 and never chmods it; newer systemd chmods the top layer to the host hierarchy's mode (spec B.2.2 step 8), as extmerge does"
case_cross

# ================================================================ known-difference probes
echo "# probes: features newer than v252 (each must behave the v252 way in systemd-sysext and the newer way in extmerge)"
# .v directories (vpick, systemd v256+).
two_roots vdir make_root_vdir
sd "$A" merge
SD_OUT=$OUT
em "$B" merge
EM_OUT=$OUT
SD_M=$(mounts_under "$A")
EM_V=$(cat "$B/usr/share/vee" 2>&1) EM_E=$(cat "$B/usr/.systemd-sysext/extensions" 2>&1)
if [ -n "$SD_M" ]; then
    notok ".v directory: systemd-sysext v252 does not merge it" "$SD_M" "$SD_OUT"
elif [ "$EM_E" != vee ] || [ "$EM_V" != 2 ]; then
    notok ".v directory: extmerge merges 'vee' from the newest entry vee_2" "extensions: $EM_E" "usr/share/vee: $EM_V" "$EM_OUT"
else
    known ".v directory vee.v/{vee_1,vee_2}: left out of the comparison" "v252 has no vpick: it sees a directory image named 'vee.v' without extension-release.vee.v and ignores it; extmerge (systemd v256+ behaviour) merges 'vee' from vee_2"
fi
sd "$A" unmerge
em "$B" unmerge

# Class suffix on directory names (foo.sysext/ -> name foo, newer systemd).
two_roots suffix make_root_suffix
sd "$A" merge
SD_OUT=$OUT
em "$B" merge
EM_OUT=$OUT
SD_USE=$(using_line "$SD_OUT")
EM_USE=$(using_line "$EM_OUT")
if [ "$SD_USE" = "Using extensions 'sufx.sysext'." ] && [ "$EM_USE" = "Using extensions 'suf.sysext'." ]; then
    known "directory suffix: suf.sysext/ (extension-release.suf), sufx.sysext/ (extension-release.sufx.sysext)" "v252 keeps '.sysext' in the image name (uses 'sufx.sysext', ignores 'suf.sysext'); newer systemd strips the class suffix, so extmerge uses the extension suf (printed by its directory name 'suf.sysext', as systemd 262 prints it) and ignores sufx.sysext (strict release-file match needs extension-release.sufx)"
else
    notok "directory suffix: suf.sysext/, sufx.sysext/" "systemd-sysext: $SD_USE" "extmerge: $EM_USE" \
        "expected systemd-sysext: Using extensions 'sufx.sysext'." "expected extmerge: Using extensions 'suf.sysext'."
fi
sd "$A" unmerge
em "$B" unmerge

# ID_LIKE (systemd v258+).
two_roots idlike make_root_idlike
sd "$A" merge
SD_OUT=$OUT
em "$B" merge
EM_OUT=$OUT
if [ -z "$(mounts_under "$A")" ] && [ "$(using_line "$EM_OUT")" = "Using extensions 'like'." ]; then
    known "host ID_LIKE=parentos, extension ID=parentos" "v252 ignores the host's ID_LIKE and refuses the extension; systemd v258+ (and extmerge) accept it"
else
    notok "host ID_LIKE=parentos, extension ID=parentos" "systemd-sysext (expected: not merged): $(mounts_under "$A") $SD_OUT" \
        "extmerge (expected: Using extensions 'like'.): $EM_OUT"
fi
sd "$A" unmerge
em "$B" unmerge

# Search directories.
two_roots searchdirs make_root_searchdirs
sd "$A" list --json=short
SD_L=$(printf '%s\n' "$OUT" | jq -r '.[].name' 2>&1 | sort)
em "$B" list --json=short
EM_L=$(printf '%s\n' "$OUT" | jq -r '.[].name' 2>&1 | sort)
if [ "$SD_L" = $'in-usr-lib\nin-usr-local\nin-var' ] && [ "$EM_L" = in-var ]; then
    known "search dirs /usr/lib/extensions, /usr/local/lib/extensions" "v252 still searches them (an extension there becomes a lowerdir inside the /usr lowerdir; a trial merge failed with ELOOP); newer systemd dropped them from the sysext search path, and extmerge does not search them"
else
    check_eq "list: search directories" "$SD_L" "$EM_L"
fi

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
elif [ "$SD_RC" = 0 ] && [ "$EM_RC" = 1 ] && printf '%s' "$SD_OUT" | grep -q "Failed to acquire 'os-release'"; then
    known "merge in a root without os-release: exit status (systemd 0, extmerge 1)" "v252's merge() returns 'r != 123' for the child's exit status, so the child's failure (no os-release) still exits 0; v257+ maps it to 'Failed to merge hierarchies' (exit 1), as extmerge does"
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
elif [ "$SD_RC" = 0 ] && [ "$RC" = 1 ]; then
    known "unmerge with a nonexistent --root: exit status (systemd 0, extmerge 1)" "v252 does not resolve --root and just skips the missing hierarchies; v260+ resolves --root once and requires a directory (spec B.11.4), extmerge refuses it too"
else
    notok "unmerge with a nonexistent --root: exit status" "systemd-sysext rc=$SD_RC" "extmerge rc=$RC: $OUT"
fi

# ================================================================ case 5: output
# extmerge invoked as systemd-sysext (a symlink: no CLASS column), both tools on the
# same root, so paths and times are the same objects'.
echo "# case 5: output of list and of help values, extmerge invoked as systemd-sysext"
mkdir -p "$WORK/as-sd"
ln -sf "$EXTMERGE" "$WORK/as-sd/systemd-sysext"
emsd() {
    local r=$1
    shift
    OUT=$("$WORK/as-sd/systemd-sysext" --root="$r" "$@" 2>&1)
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
OUT=$("$WORK/as-sd/systemd-sysext" --json=help 2>&1)
check_eq "--json=help: the values one a line, exit 0" "$SD_RC $SD_OUT" "$? $OUT"
SD_OUT=$("$SD" --mutable=help 2>&1)
SD_RC=$?
OUT=$("$WORK/as-sd/systemd-sysext" --mutable=help 2>&1)
RC=$?
if [ "$SD_RC" != 0 ] && [ "$RC" = 0 ] && [ "$OUT" = $'Known mutability modes:\nno\nyes\nauto\nimport\nephemeral\nephemeral-import' ]; then
    known "--mutable=help (systemd $SD_RC, extmerge 0)" "v252 has no --mutable (v256+); extmerge prints what systemd 262 prints: a heading, then the modes of its mutable_mode_table, one a line"
else
    notok "--mutable=help" "systemd-sysext rc=$SD_RC: $SD_OUT" "extmerge rc=$RC: $OUT"
fi

# ================================================================ leftovers
check_eq "no sysext overlay or staging tmpfs left anywhere in the namespace" "" \
    "$(awk '{ for (i = 7; $i != "-"; i++) ; if ($(i + 2) == "sysext") print $5, $(i + 1) }' /proc/self/mountinfo)" \
    expected found

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
