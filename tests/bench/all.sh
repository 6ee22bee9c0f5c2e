#!/usr/bin/env bash
# Every benchmark in one invocation, one summary: the README's performance figures come
# from its output (target/bench/summary.md).
#
#   sudo tests/bench/all.sh               # ROUNDS=30 (directories, refresh), 15 (images)
#   ROUNDS=10 IMAGE_ROUNDS=5 tests/bench/all.sh
#   PARTS="dirs syscalls" tests/bench/all.sh   # some parts only (the summary has those)
#
# Parts, each a script of its own (see its header for the method):
#   1. tests/bench/bench.sh          merge + unmerge of N = 1, 10, 50, 200, 498 directory
#                                    sysexts: extmerge vs systemd-sysext (where it can:
#                                    N ≤ 100) vs the bare syscalls, interleaved, paired
#   2. tests/bench/bench-refresh.sh  no-op and one-changed refresh vs merge, N = 50
#   3. tests/bench/bench-images.sh   merge + unmerge of N = 1, 5, 20 raw erofs images
#   4. syscalls per extension        strace -c -f of merge and of a no-op refresh at
#                                    N = 50 and N = 498: the slope per extension
#   5. tests/bench/sizes.sh          sizes of the shipped builds
# One extmerge build (the shipped CLI: static, size-tuned) is used by all timed parts.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=$REPO/target/bench
ROUNDS=${ROUNDS:-30}
IMAGE_ROUNDS=${IMAGE_ROUNDS:-15}
PARTS=${PARTS:-dirs refresh images syscalls sizes}
part() { [[ " $PARTS " == *" $1 "* ]]; }

if [[ $EUID -ne 0 ]]; then
	echo "all.sh: needs root (mount namespaces, overlayfs, loop devices)" >&2
	exit 1
fi
command -v strace >/dev/null || { echo "all.sh: needs strace" >&2; exit 1; }
mkdir -p "$OUT"

if [[ -z ${EXTMERGE:-} ]]; then
	(cd "$REPO" && RUSTFLAGS='-C target-feature=+crt-static' \
		cargo build --profile initrd --target x86_64-unknown-linux-gnu --quiet --bin extmerge)
	EXTMERGE=$REPO/target/x86_64-unknown-linux-gnu/initrd/extmerge
fi
export EXTMERGE

files=()
if part dirs; then
	ROUNDS=$ROUNDS NS="1 10 50 200 498" "$HERE/bench.sh" >/dev/null
	files+=(results.md)
fi
if part refresh; then
	ROUNDS=$ROUNDS N=50 "$HERE/bench-refresh.sh" >/dev/null
	files+=(refresh.md)
fi
if part images; then
	ROUNDS=$IMAGE_ROUNDS ROUNDS_LARGE=$IMAGE_ROUNDS NS="1 5 20" "$HERE/bench-images.sh" >/dev/null
	files+=(images.md)
fi

# Syscalls per extension: strace -c -f of one merge and one no-op refresh at two sizes,
# in a private mount namespace over a tmpfs; the slope is (calls at 498 − calls at 50)
# / 448, by syscall and in total.
syscalls() {
	unshare -m --propagation private -- bash -s "$EXTMERGE" "$OUT" <<'SCRIPT'
set -euo pipefail
X=$1 OUT=$2 F=/tmp/extmerge-bench-syscalls
mkdir -p "$F"
mount -t tmpfs tmpfs "$F"
mount -t tmpfs -o mode=0755 tmpfs /run
for n in 50 498; do
	r=$F/$n
	mkdir -p "$r/etc" "$r/usr/bin" "$r/var/lib/extensions"
	printf 'ID=debian\nVERSION_ID=12\n' >"$r/etc/os-release"
	for ((i = 0; i < n; i++)); do
		printf -v e 'e%03d' "$i"
		d=$r/var/lib/extensions/$e
		mkdir -p "$d/usr/lib/extension-release.d" "$d/usr/share/$e"
		echo 'ID=_any' >"$d/usr/lib/extension-release.d/extension-release.$e"
		echo "$e" >"$d/usr/share/$e/data"
	done
	strace -f -c -o "$OUT/strace-merge-$n.txt" "$X" --root="$r" --class=sysext merge 2>/dev/null
	strace -f -c -o "$OUT/strace-refresh-$n.txt" "$X" --root="$r" --class=sysext refresh 2>/dev/null
	"$X" --root="$r" --class=sysext unmerge 2>/dev/null
done
SCRIPT
	# strace -c: "% time, seconds, usecs/call, calls, [errors,] syscall".
	calls() { awk '$NF == "total" { print $4 }' "$1"; }
	local m50 m498 r50 r498
	m50=$(calls "$OUT/strace-merge-50.txt")
	m498=$(calls "$OUT/strace-merge-498.txt")
	r50=$(calls "$OUT/strace-refresh-50.txt")
	r498=$(calls "$OUT/strace-refresh-498.txt")
	echo "### Syscalls per extension (strace -c -f, slope from N=50 to N=498)"
	echo
	echo "| | N=50 | N=498 | per extension |"
	echo "|---|---:|---:|---:|"
	awk -v a="$m50" -v b="$m498" 'BEGIN { printf "| merge | %d | %d | %.1f |\n", a, b, (b - a) / 448 }'
	awk -v a="$r50" -v b="$r498" 'BEGIN { printf "| no-op refresh | %d | %d | %.1f |\n", a, b, (b - a) / 448 }'
	echo
	echo "Merge at N=498, by syscall (calls per extension, rounded): $(
		awk 'NR > 2 && $NF != "total" && $1 !~ /^-/ && $4 >= 400 { printf "%s %.1f, ", $NF, $4 / 498 }' "$OUT/strace-merge-498.txt" | sed 's/, $//')."
}
if part syscalls; then
	syscalls >"$OUT/syscalls.md"
	files+=(syscalls.md)
fi
if part sizes; then
	"$HERE/sizes.sh" >/dev/null
	files+=(sizes.md)
fi

{
	echo "## extmerge benchmarks, $(date -u +%Y-%m-%d), $(nproc) CPUs, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), Linux $(uname -r)"
	echo
	echo "Command: \`sudo tests/bench/all.sh\` (ROUNDS=$ROUNDS, image rounds $IMAGE_ROUNDS)."
	echo
	for f in "${files[@]}"; do
		cat "$OUT/$f"
		echo
	done
} | tee "$OUT/summary.md"
