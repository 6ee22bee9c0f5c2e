#!/usr/bin/env bash
# Benchmark in the vm-run VM (qemu TCG, Debian's 6.1 cloud kernel; the host has no
# device-mapper): merge + unmerge of N = 1 and 10 dm-verity sysext images with extmerge,
# against the same steps done with the standard tools (veritysetup open + mount -t erofs
# per image, mount -t overlay; umount + veritysetup close), interleaved, several rounds.
# Prints a Markdown table and writes it to target/bench/verity-vm.md (raw samples:
# target/bench/verity-vm-raw.tsv, guest console: target/bench/verity-vm/console.log).
#
#   sudo tests/bench/bench-verity-vm.sh                   # ROUNDS=10, NS="1 10"
#   ROUNDS=20 NS="1 10" tests/bench/bench-verity-vm.sh
#   EXTMERGE=/path/to/static/extmerge tests/bench/bench-verity-vm.sh   # no cargo build
#   VM_RUN=/path/to/runner tests/bench/bench-verity-vm.sh   (default tests/vm/vm-run)
#   REPORT_ONLY=1 tests/bench/bench-verity-vm.sh   # tables again from the last run's data
#
# Images (built here on the host, no root needed): bare erofs (`mkfs.erofs --quiet`) with
# usr/lib/extension-release.d/extension-release.eNNN (ID=_any), usr/bin/eNNN-tool and
# three files under usr/share/eNNN; `veritysetup format eNNN.raw eNNN.verity` gives the
# hash tree, its root hash goes to eNNN.roothash. extmerge finds the sidecars and sets up
# dm-verity itself (two loop devices + one verity target per image).
#
# Method: tests/bench/runner.c (static) runs the merge and then the unmerge, each as a
# process (the baseline: a busybox sh script that starts veritysetup and mount once per
# image), wall clock from fork to wait4, process start included. Untimed checks by the
# runner: a file of the first and of the last image visible after the merge and gone
# after the unmerge; after the merge exactly N dm devices and 2N loop devices on the
# fixture files; after the unmerge none (polled; the time from the unmerge's exit until
# the last is gone is "settle": extmerge marks its dm devices for deferred removal and
# the kernel removes them from a work queue, while the baseline's `veritysetup close`
# removes them before it exits). A first untimed round also checks that both show the
# same /usr tree. Everything runs in one VM boot; the order of the two alternates per
# round. TCG emulates every instruction, so absolute times are far above a real machine's
# and noisy: compare the ratios from the same run.
set -euo pipefail

ROUNDS=${ROUNDS:-10}
NS=${NS:-"1 10"}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=$REPO/target/bench
VM_RUN=${VM_RUN:-$REPO/tests/vm/vm-run}
VERITYSETUP=$(command -v veritysetup || echo /usr/sbin/veritysetup)

RAW=$OUT/verity-vm-raw.tsv
USER_EXTMERGE=${EXTMERGE:-}
EXTMERGE=${EXTMERGE:-$REPO/target/x86_64-unknown-linux-gnu/initrd/extmerge}
if [[ -z ${REPORT_ONLY:-} ]]; then # REPORT_ONLY=1: only redo the tables from the last run
rc=0
bash "$VM_RUN" --check >/dev/null || rc=$?
if ((rc == 77)); then echo "bench-verity-vm.sh: SKIP: vm-run prerequisites missing" >&2; exit 77; fi
((rc == 0)) || exit "$rc"
for t in mkfs.erofs "$VERITYSETUP"; do
	command -v "$t" >/dev/null || { echo "bench-verity-vm.sh: SKIP: $t missing" >&2; exit 77; }
done

mkdir -p "$OUT"
if [[ -z $USER_EXTMERGE ]]; then
	(cd "$REPO" && RUSTFLAGS='-C target-feature=+crt-static' \
		cargo build --profile initrd --target x86_64-unknown-linux-gnu --quiet --bin extmerge)
fi
gcc -O2 -Wall -static -o "$OUT/runner" "$HERE/runner.c"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/extmerge-bench-verity.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

maxn=0
for n in $NS; do if ((n > maxn)); then maxn=$n; fi; done
mkdir -p "$tmp/images"
for ((i = 0; i < maxn; i++)); do
	printf -v e 'e%03d' "$i"
	s=$tmp/src/$e
	mkdir -p "$s/usr/lib/extension-release.d" "$s/usr/bin" "$s/usr/share/$e/doc"
	echo 'ID=_any' >"$s/usr/lib/extension-release.d/extension-release.$e"
	printf '#!/bin/sh\necho %s\n' "$e" >"$s/usr/bin/$e-tool"
	chmod +x "$s/usr/bin/$e-tool"
	echo "$e" >"$s/usr/share/$e/data"
	echo "$e" >"$s/usr/share/$e/doc/README"
	echo "$e" >"$s/usr/share/$e/doc/COPYING"
	mkfs.erofs --quiet --all-root "$tmp/images/$e.raw" "$s"
	h=$("$VERITYSETUP" format "$tmp/images/$e.raw" "$tmp/images/$e.verity" |
		sed -nE 's/^Root hash:[[:space:]]+([0-9a-f]+)$/\1/p')
	[[ -n $h ]] || { echo "bench-verity-vm.sh: veritysetup format gave no root hash" >&2; exit 1; }
	echo "$h" >"$tmp/images/$e.roothash"
done
for n in $NS; do
	r=$tmp/fix/v$n
	mkdir -p "$r/etc" "$r/usr/bin" "$r/usr/share/host" "$r/usr/lib" "$r/var/lib/extensions"
	printf 'ID=debian\nVERSION_ID=12\nSYSEXT_LEVEL=1.0\n' >"$r/etc/os-release"
	echo host >"$r/usr/bin/host-tool"
	echo host >"$r/usr/share/host/data"
	for ((i = 0; i < n; i++)); do
		printf -v e 'e%03d' "$i"
		cp "$tmp/images/$e".{raw,verity,roothash} "$r/var/lib/extensions/"
	done
done

rm -f "$OUT/verity-vm/verity-raw.tsv" "$OUT/verity-vm/verity-env.txt"
bash "$VM_RUN" --quiet --timeout "${VM_TIMEOUT:-1800}" --mem 1G --out "$OUT/verity-vm" \
	--add "$tmp/fix:/bench/fix" \
	--add "$EXTMERGE:/usr/bin/extmerge" \
	--add "$OUT/runner:/usr/bin/runner" \
	--bin "$VERITYSETUP" \
	-- "$HERE/bench-verity-guest.sh" run "$ROUNDS" "$NS"
cp "$OUT/verity-vm/verity-raw.tsv" "$RAW"
fi

stats() { # stats N TOOL COLUMN -> "median min max" in ns; COLUMN 0 = total + settle
	awk -F'\t' -v n="$1" -v t="$2" -v c="$3" 'NR > 1 && $2 == n && $3 == t { print (c == 0 ? $6 + $9 : $c) }' "$RAW" |
		sort -n | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m, v[1], v[NR] }'
}
count() { awk -F'\t' -v n="$1" -v t="$2" 'NR > 1 && $2 == n && $3 == t' "$RAW" | wc -l; }
ms() { awk -v x="$1" 'BEGIN { printf "%.1f", x / 1e6 }'; }
per() { awk -v x="$1" -v n="$2" 'BEGIN { printf "%.1f", x / n / 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
env_line() { sed -n "s/^$1: //p" "$OUT/verity-vm/verity-env.txt"; }

{
	echo "### extmerge vs veritysetup + mount: merge + unmerge of N dm-verity erofs images (VM, qemu TCG)"
	echo
	echo "Guest: Linux $(env_line kernel), $(env_line cpus) CPU under qemu TCG (no KVM) on a host with $(nproc) CPUs; $(env_line veritysetup); images $(env_line 'image size'); guest time $(env_line elapsed)."
	echo "$ROUNDS rounds per N, interleaved (order alternating). extmerge: static build (--profile initrd), $(stat -c %s "$EXTMERGE") bytes."
	echo "Times: one merge process + one unmerge process (the baseline: one busybox sh per phase, which runs veritysetup and mount per image), wall clock in the guest, process start included. Emulated: compare ratios, not absolute values."
	echo
	echo "| N | extmerge median (ms) | per image | veritysetup+mount median (ms) | per image | baseline/extmerge | same, with settle time added to both |"
	echo "|---:|---:|---:|---:|---:|---:|---:|"
	for n in $NS; do
		read -r em _ < <(stats "$n" extmerge 6)
		read -r fm _ < <(stats "$n" floor 6)
		read -r es _ < <(stats "$n" extmerge 0)
		read -r fs _ < <(stats "$n" floor 0)
		echo "| $n | $(ms "$em") | $(per "$em" "$n") | $(ms "$fm") | $(per "$fm" "$n") | $(ratio "$fm" "$em") | $(ratio "$fs" "$es") |"
	done
	echo
	echo "Minimum, per-phase medians (merge / unmerge), CPU time (user+sys of all processes, from wait4), settle (unmerge exit → last dm and loop device gone: median / max), in ms:"
	echo
	echo "| N | samples | extmerge min | baseline min | extmerge merge / unmerge | baseline merge / unmerge | merge ratio | unmerge ratio | extmerge CPU | baseline CPU | extmerge settle | baseline settle |"
	echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for n in $NS; do
		read -r _ emin _ < <(stats "$n" extmerge 6)
		read -r _ fmin _ < <(stats "$n" floor 6)
		read -r emm _ < <(stats "$n" extmerge 4)
		read -r eum _ < <(stats "$n" extmerge 5)
		read -r fmm _ < <(stats "$n" floor 4)
		read -r fum _ < <(stats "$n" floor 5)
		read -r ec _ < <(stats "$n" extmerge 8)
		read -r fc _ < <(stats "$n" floor 8)
		read -r es _ esx < <(stats "$n" extmerge 9)
		read -r fs _ fsx < <(stats "$n" floor 9)
		echo "| $n | $(count "$n" extmerge) | $(ms "$emin") | $(ms "$fmin") | $(ms "$emm") / $(ms "$eum") | $(ms "$fmm") / $(ms "$fum") | $(ratio "$fmm" "$emm") | $(ratio "$fum" "$eum") | $(ms "$ec") | $(ms "$fc") | $(ms "$es") / $(ms "$esx") | $(ms "$fs") / $(ms "$fsx") |"
	done
} | tee "$OUT/verity-vm.md"
