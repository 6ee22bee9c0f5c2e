#!/usr/bin/env bash
# Benchmark: a per-service refresh (--pid, into another process's mount namespace)
# against a host refresh of the same stack: 10 directory confexts, one of them replaced
# before every refresh. Prints a Markdown table (target/bench/target.md; raw samples in
# target/bench/target.tsv).
#
#   sudo tests/bench/bench-target.sh            # ROUNDS=30 by default
#   EXTMERGE=/path/to/extmerge tests/bench/bench-target.sh
#
# Method: one root with confexts c000..c009 in /srv/confexts, a target process that
# unshared its mount namespace, both stacks merged once. Each round, for each contender
# in turn (order alternating): c005 is replaced by a copy with other content (untimed),
# then one refresh runs as its own process through tests/bench/runner.c (wall clock from
# before fork to after wait4, start-up included); then (untimed) the new content must be
# visible where that refresh merged it, or the run aborts. Reported: medians, minimums and
# the median of the paired ratios target/host.
set -euo pipefail

ROUNDS=${ROUNDS:-30}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/bench/lib.sh
. "$HERE/lib.sh"
REPO=$(cd "$HERE/../.." && pwd)
OUT=$REPO/target/bench
FIXTURES=/tmp/extmerge-bench-target

if [[ $EUID -ne 0 ]]; then
	echo "bench-target.sh: needs root (mount namespaces, overlayfs)" >&2
	exit 1
fi

bench_namespace "$0" "$@"

# --- inside a private mount namespace from here on ---
R=$FIXTURES/root

mkdir -p "$R/etc" "$R/srv/confexts"
printf 'ID=debian\nVERSION_ID=12\n' >"$R/etc/os-release"
echo host >"$R/etc/host.conf"
confext() { # DIR NAME CONTENT
	mkdir -p "$1/etc/extension-release.d" "$1/etc/$2.d"
	echo 'ID=_any' >"$1/etc/extension-release.d/extension-release.$2"
	echo "$3" >"$1/etc/$2.conf"
	echo "$3" >"$1/etc/$2.d/extra.conf"
}
for i in $(seq 0 9); do
	printf -v e 'c%03d' "$i"
	confext "$R/srv/confexts/$e" "$e" "$e v0"
done

unshare -m --propagation private sleep infinity &
TARGET=$!
trap 'kill $TARGET 2>/dev/null || true' EXIT
for _ in $(seq 100); do
	[[ $(readlink /proc/$TARGET/ns/mnt) != $(readlink /proc/self/ns/mnt) ]] && break
	sleep 0.05
done
[[ $(readlink /proc/$TARGET/ns/mnt) != $(readlink /proc/self/ns/mnt) ]] ||
	{ echo "bench-target.sh: the target did not get a namespace of its own" >&2; exit 1; }

ARGS=("--root=$R" --search=/srv/confexts --class=confext)
"$EXTMERGE" "${ARGS[@]}" merge 2>/dev/null
"$EXTMERGE" --pid=$TARGET "${ARGS[@]}" merge 2>/dev/null
[[ $(cat "/proc/$TARGET/root$R/etc/c009.conf") == "c009 v0" && $(cat "$R/etc/c009.conf") == "c009 v0" ]] ||
	{ echo "bench-target.sh: the initial merges are not visible" >&2; exit 1; }

RAW=$OUT/target.tsv
printf 'round\ttool\tns\tcpu_ns\n' >"$RAW"
gen=0
load=$(cut -d' ' -f1-3 /proc/loadavg)
for ((round = 0; round < ROUNDS; round++)); do
	for ((k = 0; k < 2; k++)); do
		t=$([[ $(((round + k) % 2)) == 0 ]] && echo host || echo target)
		gen=$((gen + 1))
		rm -rf "$R/srv/confexts/c005"
		confext "$R/srv/confexts/c005" c005 "c005 v$gen"
		case $t in
		host) cmd=("$EXTMERGE" "${ARGS[@]}" refresh) seen=$R/etc/c005.conf ;;
		target) cmd=("$EXTMERGE" --pid=$TARGET "${ARGS[@]}" refresh) seen=/proc/$TARGET/root$R/etc/c005.conf ;;
		esac
		m= cpu=
		read -r m _ _ cpu < <(${PRIO_CMD[@]+"${PRIO_CMD[@]}"} "$RUNNER" "${cmd[@]}" ::: /bin/true) || true
		[[ -n $cpu ]] || { echo "bench-target.sh: $t refresh failed in round $round" >&2; exit 1; }
		[[ $(cat "$seen") == "c005 v$gen" ]] ||
			{ echo "bench-target.sh: $t refresh in round $round: $seen is not 'c005 v$gen'" >&2; exit 1; }
		printf '%d\t%s\t%d\t%d\n' "$round" "$t" "$m" $((cpu * 1000)) >>"$RAW"
	done
done
# Exactly one overlay each, after all those refreshes.
n_host=$(awk -v p="$R/etc" '$5 == p' /proc/self/mountinfo | wc -l)
n_target=$(awk -v p="$R/etc" '$5 == p' "/proc/$TARGET/mountinfo" | wc -l)
[[ $n_host == 1 && $n_target == 1 ]] ||
	{ echo "bench-target.sh: mounts on $R/etc: host $n_host, target $n_target (want 1 each)" >&2; exit 1; }

med() { # med TOOL COLUMN
	awk -F'\t' -v t="$1" -v c="$2" 'NR > 1 && $2 == t { print $c }' "$RAW" | sort -n |
		awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2, v[1] }'
}
paired() { # median of target/host per round
	awk -F'\t' 'NR > 1 { v[$1, $2] = $3; r[$1] = 1 } END { for (i in r) print v[i, "target"] / v[i, "host"] }' "$RAW" |
		sort -g | awk '{ v[NR] = $1 } END { printf "%.2f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ms() { awk -v x="$1" 'BEGIN { printf "%.2f", x / 1e6 }'; }
read -r hm hmin < <(med host 3)
read -r tm tmin < <(med target 3)
read -r hc _ < <(med host 4)
read -r tc _ < <(med target 4)
{
	echo "### Per-service refresh (--pid) vs host refresh: 10 directory confexts, one replaced each time"
	echo
	echo "$ROUNDS rounds, alternating, under '${PRIO:-normal scheduling}', $(nproc) CPUs, Linux $(uname -r); load average before: $load."
	echo
	echo "| refresh | median (ms) | min (ms) | CPU median (ms) |"
	echo "|---|---:|---:|---:|"
	echo "| host | $(ms "$hm") | $(ms "$hmin") | $(ms "$hc") |"
	echo "| per-service (--pid) | $(ms "$tm") | $(ms "$tmin") | $(ms "$tc") |"
	echo
	echo "Paired ratio per-service / host (median of the per-round ratios): **$(paired)**."
} | tee "$OUT/target.md"
