#!/usr/bin/env bash
# The main job on a bundled demo root: build extmerge, make a demo root with system and
# configuration extensions (some incompatible, to show why they are skipped), then
# list, plan, merge, show status and merged files, refresh, and unmerge — all inside a
# private mount namespace over a temp dir, so the machine's own /usr, /etc, /opt are
# never touched.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
    echo "demo: needs a Rust toolchain (cargo) on PATH" >&2
    exit 1
fi
if [ "$(id -u)" = 0 ] && { ! command -v unshare >/dev/null || ! command -v mkfs.erofs >/dev/null; }; then
    echo "demo: installing util-linux and erofs-utils (apt-get)"
    apt-get update -qq && apt-get install -y -qq --no-install-recommends --no-upgrade util-linux erofs-utils >/dev/null
fi
# A release build with LTO: about 40 s the first time; cargo shows its progress.
echo "demo: building extmerge (cargo build --release; the first build takes a while)"
cargo build --release --bin extmerge
B=$PWD/target/release/extmerge
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
R=$work/root
echo "demo: making a demo root in $R"
sh demo/make-root.sh "$R" >/dev/null

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
say extmerge --root=$R list
"$B" --root="$R" list
say extmerge --root=$R plan
"$B" --root="$R" plan

if [ "$(id -u)" != 0 ]; then
    echo
    echo "demo: merging needs root (a private mount namespace); run as root to see the merge."
    exit 0
fi

export B R
unshare -m bash -euo pipefail -c '
    say() { printf "\n\033[1m$ %s\033[0m\n" "$*"; }
    mount --make-rshared /
    mount -t tmpfs tmpfs /run
    say extmerge --root=$R merge
    "$B" --root="$R" merge
    say extmerge --root=$R status
    "$B" --root="$R" status
    say cat $R/etc/motd $R/usr/share/tools/version
    cat "$R/etc/motd" "$R/usr/share/tools/version"
    if [ -f "$R/usr/share/fortune/today" ]; then
        say cat $R/usr/share/fortune/today
        cat "$R/usr/share/fortune/today"
    fi
    say $R/usr/bin/hello
    sh "$R/usr/bin/hello"
    say cat $R/usr/.systemd-sysext/extensions
    cat "$R/usr/.systemd-sysext/extensions"
    say grep overlay /proc/self/mountinfo
    grep overlay /proc/self/mountinfo | cut -d" " -f5,9,10 
    say extmerge --root=$R refresh
    "$B" --root="$R" refresh
    say extmerge --root=$R unmerge
    "$B" --root="$R" unmerge
    say extmerge --root=$R status --json=short
    "$B" --root="$R" status --json=short
    if grep -q overlay /proc/self/mountinfo; then echo "demo: overlay left behind" >&2; exit 1; fi
'
echo
echo "demo: done (merge, status, refresh, unmerge on $R; nothing left mounted)"
