#!/usr/bin/env bash
# Installs every Debian package the tests use (fixture builders, the C toolchain, qemu
# with Debian's cloud kernel for the VM and boot tests, the kernel source for the signed
# images' test kernel, dracut, docs tools). Safe to run again: what is installed already
# is left alone and nothing installed is upgraded, so the systemd-sysext the differential
# test compares against stays the version it was.
#
#   tests/deps.sh           install what is missing (root, apt)
#   tests/deps.sh --check   only report; exit 1 when something is missing
set -euo pipefail

PACKAGES=(
    # fixtures: file systems, GPT, verity, signatures
    util-linux fdisk e2fsprogs erofs-utils squashfs-tools cryptsetup-bin openssl keyutils
    # the C ABI tests
    gcc libc6-dev binutils pkg-config valgrind
    # the differential test and the boot tests' real root; systemd-socket-activate for
    # the Varlink test (tests/varlink.rs)
    systemd dracut-core jq
    # the differential test against Debian unstable's systemd (tests/diff/sid-root.sh)
    mmdebstrap
    # the VM runner (tests/vm/vm-run): emulator, guest kernel + modules, guest userland
    qemu-system-x86 linux-image-cloud-amd64 busybox-static cpio kmod dmsetup
    # the test kernel that trusts a test CA (tests/vm/signed-kernel.sh builds it)
    linux-source-6.1 make bc flex bison libelf-dev libssl-dev xz-utils
    # the small static initrd build (initrd-hooks/build.sh, tests/bench/sizes.sh)
    musl-tools
    # man pages and shell completion
    scdoc groff-base man-db bash-completion
)

check_only=0
[[ ${1:-} == --check ]] && check_only=1

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }

missing=()
for p in "${PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
    echo "deps: all ${#PACKAGES[@]} packages present"
    exit 0
fi
echo "deps: missing: ${missing[*]}"
((check_only == 0)) || exit 1
[[ $(id -u) == 0 ]] || { echo "deps: run as root to install them" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive
if [[ -z $(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages' -mmin -720 -print -quit 2>/dev/null) ]]; then
    echo "deps: apt-get update"
    apt-get update -qq
fi

# dracut-core needs udev, and udev wants libudev1 of exactly its own version: the newest
# udev would drag libudev1 and systemd up with it. Ask for the udev that matches the
# libudev1 already installed when the archive still has it.
pins=()
if ! installed udev && installed libudev1; then
    have=$(dpkg-query -W -f='${Version}' libudev1)
    if apt-cache madison udev | awk -F'|' '{gsub(/ /, "", $2); print $2}' | grep -qxF "$have"; then
        pins+=("udev=$have")
    fi
fi

before=$(dpkg-query -W -f='${Package} ${Version}\n' systemd libudev1 2>/dev/null || true)
start=$SECONDS
apt-get install -y -qq --no-install-recommends --no-upgrade -o DPkg::Lock::Timeout=300 \
    "${missing[@]}" "${pins[@]}" >/dev/null
after=$(dpkg-query -W -f='${Package} ${Version}\n' systemd libudev1 2>/dev/null || true)
echo "deps: installed ${#missing[@]} package(s) in $((SECONDS - start)) s"
if [[ $before != "$after" ]]; then
    echo "deps: warning: installing changed systemd's version:" >&2
    diff <(echo "$before") <(echo "$after") >&2 || true
fi
