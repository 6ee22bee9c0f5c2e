#!/usr/bin/env bash
# Builds (or reuses) a minimal Debian unstable root with the newest systemd-sysext under
# target/sid-root, for the differential test against systemd 262+ (tests/diff/systemd262-diff.sh).
#
# The root is made by mmdebstrap (variant minbase, only the package shipping
# systemd-sysext and its dependencies) from deb.debian.org. It is reused as long as it was
# built by this very script (its sha256 is recorded in target/sid-root.stamp) and is
# complete; SID_ROOT_REBUILD=1 forces a rebuild, SID_ROOT_CHECK=1 also asks the archive
# whether a newer version of the recorded packages exists and rebuilds if so.
#
#   tests/diff/sid-root.sh            build or reuse; prints the root's path on the last line
#   SID_ROOT=/path tests/diff/sid-root.sh   somewhere else (default: <repo>/target/sid-root)
#
# Output: "# sid-root: ..." lines, then the systemd-sysext version, then the root path.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
ROOT=${SID_ROOT:-$REPO/target/sid-root}
STAMP=$ROOT.stamp
MIRROR=${SID_MIRROR:-http://deb.debian.org/debian}
SUITE=${SID_SUITE:-unstable}
SELF_HASH=$(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)
log() { echo "# sid-root: $*" >&2; }

[ "$(id -u)" = 0 ] || { log "needs root (mmdebstrap in root mode, chroot)"; exit 1; }
command -v mmdebstrap >/dev/null || { log "mmdebstrap is not installed (tests/deps.sh)"; exit 1; }
# One builder at a time; tests/diff/systemd262-diff.sh holds a shared lock while it uses
# the root, so it is never rebuilt under a running test.
mkdir -p "$(dirname "$ROOT")"
exec 9>"$ROOT.lock"
flock -w 900 9 || { log "timed out waiting for $ROOT.lock"; exit 1; }

# Package(s) to include: the one that ships /usr/bin/systemd-sysext in unstable. Debian
# has no separate systemd-sysext package (checked against unstable: "Unable to locate
# package systemd-sysext"); the tool is in `systemd` itself.
PKGS=${SID_PACKAGES:-systemd}
# The archive's Release files may be past Valid-Until on a host whose clock runs ahead of
# the mirror (seen in CI sandboxes): that must not stop the bootstrap.
APTOPTS=(--aptopt='Acquire::Check-Valid-Until "false"' --aptopt='Acquire::Retries "3"'
    --aptopt='APT::Install-Recommends "false"')

versions() { # the recorded package versions in ROOT
    chroot "$ROOT" dpkg-query -W -f='${Package} ${Version}\n' 2>/dev/null | sort
}
usable() {
    [ -f "$STAMP" ] && [ -x "$ROOT/usr/bin/systemd-sysext" ] &&
        [ "$(sed -n 's/^script //p' "$STAMP")" = "$SELF_HASH" ] &&
        [ "$(sed -n 's/^packages //p' "$STAMP")" = "$PKGS" ] &&
        [ "$(sed -n '/^versions$/,$p' "$STAMP" | tail -n +2)" = "$(versions)" ]
}

if [ -z "${SID_ROOT_REBUILD:-}" ] && usable; then
    if [ -n "${SID_ROOT_CHECK:-}" ]; then
        # Compare the recorded systemd-sysext version with the archive's (apt in the chroot).
        have=$(chroot "$ROOT" dpkg-query -W -f='${Version}' systemd)
        # (apt in the chroot, in a private mount namespace: /proc is mounted there only)
        new=$(unshare -m --propagation private sh -c 'mkdir -p "$1/proc" && mount -t proc proc "$1/proc" && chroot "$1" sh -c \
            "apt-get -qq -o Acquire::Check-Valid-Until=false update >/dev/null 2>&1; apt-cache policy systemd;
             rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin"' sh "$ROOT" |
            awk '/Candidate:/ { print $2 }' || true)
        if [ -n "$new" ] && [ "$new" != "$have" ]; then
            log "archive has systemd $new (root has $have): rebuilding"
            SID_ROOT_REBUILD=1
        fi
    fi
fi
if [ -z "${SID_ROOT_REBUILD:-}" ] && usable; then
    log "reusing $ROOT (built $(sed -n 's/^built //p' "$STAMP"), $(du -sh "$ROOT" | cut -f1))"
else
    # Never rm -rf through a mount left behind by an interrupted run.
    # Mount points in mountinfo have space, tab, newline, backslash octal-escaped
    # (the checkout path may hold a space); through the environment, as `awk -v`
    # would undo the escapes.
    esc=${ROOT//\\/\\134}
    esc=${esc// /\\040}
    esc=${esc//$'\t'/\\011}
    esc=${esc//$'\n'/\\012}
    if [ -e "$ROOT" ] && MI_R="$esc/" awk 'BEGIN { r = ENVIRON["MI_R"] } index($5 "/", r) == 1 { f = 1 } END { exit !f }' /proc/self/mountinfo; then
        log "$ROOT has mounts below it; refusing to remove it"
        exit 1
    fi
    rm -rf "$ROOT" "$STAMP" "$ROOT.new"
    mkdir -p "$(dirname "$ROOT")"
    log "building $ROOT: mmdebstrap --variant=minbase $SUITE, --include=$PKGS from $MIRROR"
    start=$SECONDS
    # Documentation, man pages, locales and the apt lists are not needed by the test.
    trap 'rm -rf "$ROOT.new"' EXIT
    mmdebstrap --mode=root --variant=minbase --include="$PKGS" "${APTOPTS[@]}" \
        --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
        --quiet \
        "$SUITE" "$ROOT.new" "$MIRROR" >&2
    mv "$ROOT.new" "$ROOT"
    trap - EXIT
    {
        echo "script $SELF_HASH"
        echo "packages $PKGS"
        echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) in $((SECONDS - start)) s"
        echo versions
        versions
    } >"$STAMP"
    log "built in $((SECONDS - start)) s, $(du -sh "$ROOT" | cut -f1)"
fi
log "$(chroot "$ROOT" dpkg-query -W -f='${Package} ${Version}' systemd 2>/dev/null || true)"
chroot "$ROOT" /usr/bin/systemd-sysext --version | head -n1
echo "$ROOT"
