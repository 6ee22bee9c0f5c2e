#!/usr/bin/env bash
# Benchmark: refresh of a merge of N directory sysexts (default 50) when nothing changed
# and when one extension was replaced, against a merge of the same N, interleaved in each
# round. Prints a Markdown table and writes it to target/bench/refresh.md (raw samples:
# target/bench/refresh-raw.tsv).
#
#   sudo tests/bench/bench-refresh.sh          # ROUNDS=30, N=50
#   ROUNDS=50 N=200 tests/bench/bench-refresh.sh
#   EXTMERGE=/path/to/extmerge tests/bench/bench-refresh.sh   # another build; no cargo
#
# Contenders, each one process timed by tests/bench/runner.c (fork+execv, wait4,
# process start included), each preparing its own state untimed first:
#   merge      after an untimed unmerge: `extmerge merge`
#   no-op      on the merge in place:    `extmerge refresh` (nothing changed)
#   one-changed after replacing e000 by a copy (a new directory, as deploy tools do):
#              `extmerge refresh` (merges again)
# All three end merged. Before the timed rounds, one untimed round checks that the no-op
# refresh said it skipped and left the overlay in place, and that the one-changed refresh
# replaced it (a new overlay, the new copy's file visible); any failure aborts the run.
# Reported: medians and minima, and the per-round ratios no-op / merge and one-changed /
# merge (median of the paired ratios: robust against drift on a noisy machine).
#
# Runs as root in a private mount namespace (unshare -m); nothing leaks to the host.
set -euo pipefail

ROUNDS=${ROUNDS:-30}
N=${N:-50}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/bench/lib.sh
. "$HERE/lib.sh"
REPO=$(cd "$HERE/../.." && pwd)
OUT=$REPO/target/bench
FIXTURES=/tmp/extmerge-bench-refresh

if [[ $EUID -ne 0 ]]; then
	echo "bench-refresh.sh: needs root (mount namespaces, overlayfs)" >&2
	exit 1
fi

BENCH_C=()
bench_namespace "$0" "$@"

# --- inside a private mount namespace from here on ---
R=$FIXTURES/root
mkdir -p "$R/etc" "$R/usr/bin" "$R/usr/lib" "$R/var/lib/extensions" "$FIXTURES/spare"
printf 'ID=debian\nVERSION_ID=12\nSYSEXT_LEVEL=1.0\n' >"$R/etc/os-release"
echo host >"$R/usr/bin/host-tool"
for ((i = 0; i < N; i++)); do
	printf -v e 'e%03d' "$i"
	d=$R/var/lib/extensions/$e
	mkdir -p "$d/usr/lib/extension-release.d" "$d/usr/bin" "$d/usr/share/$e"
	echo 'ID=_any' >"$d/usr/lib/extension-release.d/extension-release.$e"
	printf '#!/bin/sh\necho %s\n' "$e" >"$d/usr/bin/$e-tool"
	echo "$e" >"$d/usr/share/$e/data"
done

X=("$EXTMERGE" "--root=$R" --class=sysext)
merged() { grep -q " $R/usr " /proc/self/mountinfo; }
mount_id() { awk -v p="$R/usr" '$5 == p { id = $1 } END { print id }' /proc/self/mountinfo; }
gen=0
# Replaces e000 by a new copy (new inode, new birth time) with a file naming the copy.
replace_one() {
	gen=$((gen + 1))
	local d=$R/var/lib/extensions/e000
	rm -rf "$FIXTURES/spare/e000"
	cp -a "$d" "$FIXTURES/spare/e000"
	echo "$gen" >"$FIXTURES/spare/e000/usr/share/e000/gen"
	rm -rf "$d"
	mv "$FIXTURES/spare/e000" "$d"
}

# Untimed checks (and warm-up).
"${X[@]}" merge >/dev/null 2>&1
merged || { echo "bench-refresh.sh: merge did not merge" >&2; exit 1; }
before=$(mount_id)
out=$("${X[@]}" refresh 2>&1)
if [[ $out != *"Skipping extension refresh"* || $(mount_id) != "$before" ]]; then
	echo "bench-refresh.sh: the no-op refresh did not skip:" >&2
	echo "$out" >&2
	exit 1
fi
replace_one
out=$("${X[@]}" refresh 2>&1)
if [[ $(mount_id) == "$before" || $(cat "$R/usr/share/e000/gen" 2>/dev/null) != "$gen" ]]; then
	echo "bench-refresh.sh: the refresh after a replaced extension did not merge it:" >&2
	echo "$out" >&2
	exit 1
fi

TOOLS=(merge noop changed)
RAW=$OUT/refresh-raw.tsv
printf 'round\tcontender\tns\n' >"$RAW"
load=$(cut -d' ' -f1-3 /proc/loadavg)
start=$(date +%s)
for ((round = 0; round < ROUNDS; round++)); do
	for ((k = 0; k < 3; k++)); do
		t=${TOOLS[$(((round + k) % 3))]}
		case $t in
		merge)
			"${X[@]}" unmerge >/dev/null 2>&1
			cmd=("${X[@]}" merge)
			;;
		noop) cmd=("${X[@]}" refresh) ;;
		changed)
			replace_one
			cmd=("${X[@]}" refresh)
			;;
		esac
		m=
		read -r m _ _ _ < <(${PRIO_CMD[@]+"${PRIO_CMD[@]}"} "$RUNNER" "${cmd[@]}" ::: /bin/true) || true
		[[ -n $m ]] || { echo "bench-refresh.sh: $t round $round failed" >&2; exit 1; }
		merged || { echo "bench-refresh.sh: not merged after $t (round $round)" >&2; exit 1; }
		printf '%d\t%s\t%d\n' "$round" "$t" "$m" >>"$RAW"
	done
done
elapsed=$(($(date +%s) - start))

stats() { # stats CONTENDER -> "median min" in ns
	awk -F'\t' -v t="$1" 'NR > 1 && $2 == t { print $3 }' "$RAW" | sort -n |
		awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m, v[1] }'
}
paired() { # paired CONTENDER -> median over rounds of CONTENDER / merge
	awk -F'\t' -v t="$1" 'NR > 1 { v[$1, $2] = $3; r[$1] = 1 }
		END { for (k in r) if (v[k, "merge"] > 0) print v[k, t] / v[k, "merge"] }' "$RAW" | sort -g |
		awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f", m }'
}
ms() { awk -v x="$1" 'BEGIN { printf "%.2f", x / 1e6 }'; }
read -r mm mmin < <(stats merge)
read -r nm nmin < <(stats noop)
read -r cm cmin < <(stats changed)
{
	echo "### Refresh of $N directory sysexts vs their merge"
	echo
	echo "$ROUNDS rounds, interleaved (order rotating), under '${PRIO:-normal scheduling}', $(nproc) CPUs, Linux $(uname -r), $elapsed s; load average before: $load."
	echo "One process each, wall clock, process start included. Ratios: median of the per-round ratios."
	echo
	echo "| N | merge median (min) ms | no-op refresh median (min) ms | one-changed refresh median (min) ms | no-op / merge | one-changed / merge |"
	echo "|---:|---:|---:|---:|---:|---:|"
	echo "| $N | $(ms "$mm") ($(ms "$mmin")) | $(ms "$nm") ($(ms "$nmin")) | $(ms "$cm") ($(ms "$cmin")) | $(paired noop) | $(paired changed) |"
} | tee "$OUT/refresh.md"
