#!/usr/bin/env bash
# Benchmark: merge + unmerge of N directory sysexts (NS, default 1 10 50) with extmerge, with Debian's
# systemd-sysext (v252) and with the bare syscalls (tests/bench/floor.c), on the same
# fixtures, interleaved in each round. Prints a Markdown table and writes it to
# target/bench/results.md (raw samples: target/bench/raw.tsv).
#
#   sudo tests/bench/bench.sh            # ROUNDS=30 by default
#   ROUNDS=100 NS="1 10 50" tests/bench/bench.sh
#   EXTMERGE=/path/to/extmerge tests/bench/bench.sh   # another build; skips cargo build
#   SYSTEMD_SYSEXT=/path/to/systemd-sysext tests/bench/bench.sh
#
# Method: every measurement is one merge followed by one unmerge, each a separate process
# started by tests/bench/runner.c (fork+execv, wait4; CLOCK_MONOTONIC from before fork to
# after wait4), so process start-up is included for all three, and the floor also pays
# two process starts. Between the merge and the unmerge the runner checks (untimed) that a
# file of the first and of the last extension is visible under ROOT/usr, and after the
# unmerge that it is gone; any failure aborts the run. The order of the three contenders
# rotates from round to round. Reported: median and minimum over ROUNDS; ratios are
# ratios of medians of this run, and "paired" the median over rounds of the ratio of
# the two contenders' times in the same round (robust against a machine whose speed
# drifts). Peak RSS: the largest ru_maxrss seen over all rounds. systemd-sysext takes
# part up to SYSEXT_MAX_N (100) extensions.
# Also reported: median CPU time (user+sys of both processes, from wait4), which is less
# disturbed than wall time by other load on the machine.
#
# The timed processes run under SCHED_FIFO priority 10 (env PRIO="chrt -f 10"; PRIO=
# "nice -n -20" or PRIO="" for others), so that other load on a shared machine (compiles)
# delays their wake-ups less; all three contenders get the same treatment.
#
# Runs as root in a private mount namespace (unshare -m); nothing leaks to the host.
#
# Disk images: tests/bench/bench-images.sh (raw erofs images on the host, loop devices)
# and tests/bench/bench-verity-vm.sh (dm-verity images in the vm-run VM).
set -euo pipefail

ROUNDS=${ROUNDS:-30}
NS=${NS:-"1 10 50"}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/bench/lib.sh
. "$HERE/lib.sh"
REPO=$(cd "$HERE/../.." && pwd)
OUT=$REPO/target/bench
SYSEXT=${SYSTEMD_SYSEXT:-/usr/bin/systemd-sysext}
FIXTURES=/tmp/extmerge-bench

if [[ $EUID -ne 0 ]]; then
	echo "bench.sh: needs root (mount namespaces, overlayfs)" >&2
	exit 1
fi

BENCH_C=(floor.c)
bench_namespace "$0" "$@"

# --- inside a private mount namespace from here on ---
# systemd-sysext (v252) merges in a child mount namespace and relies on propagation to
# make the result visible, so mounts are shared (bench_namespace); it also makes /run a
# slave there and stages under /run/systemd/sysext, so /run gets its own tmpfs and the
# fixtures live outside /run.
FLOOR=$OUT/floor
[[ -x $SYSEXT ]] || { echo "bench.sh: $SYSEXT not found" >&2; exit 1; }

# A root with N directory sysexts e000..e(N-1): ID=_any (accepted by v252), a tool in
# /usr/bin, a few files in /usr/share; the host has its own /usr/bin and /usr/share.
make_root() {
	local r=$1 n=$2 i e
	mkdir -p "$r/etc" "$r/usr/bin" "$r/usr/share/host" "$r/usr/lib" "$r/var/lib/extensions"
	printf 'ID=debian\nVERSION_ID=12\nSYSEXT_LEVEL=1.0\n' >"$r/etc/os-release"
	echo host >"$r/usr/bin/host-tool"
	echo host >"$r/usr/share/host/data"
	for ((i = 0; i < n; i++)); do
		printf -v e 'e%03d' "$i"
		local d=$r/var/lib/extensions/$e
		mkdir -p "$d/usr/lib/extension-release.d" "$d/usr/bin" "$d/usr/share/$e/doc"
		echo 'ID=_any' >"$d/usr/lib/extension-release.d/extension-release.$e"
		printf '#!/bin/sh\necho %s\n' "$e" >"$d/usr/bin/$e-tool"
		chmod +x "$d/usr/bin/$e-tool"
		echo "$e" >"$d/usr/share/$e/data"
		echo "$e" >"$d/usr/share/$e/doc/README"
		echo "$e" >"$d/usr/share/$e/doc/COPYING"
	done
}

# cmd_for TOOL N: sets CMD to the runner argument list (checks, merge ::: unmerge).
cmd_for() {
	local tool=$1 n=$2 r=$FIXTURES/$2 last
	printf -v last 'e%03d' $((n - 1))
	CMD=(-e "$r/usr/bin/e000-tool" -e "$r/usr/share/$last/data")
	case $tool in
	extmerge) CMD+=("$EXTMERGE" "--root=$r" --class=sysext merge ::: "$EXTMERGE" "--root=$r" --class=sysext unmerge) ;;
	sysext) CMD+=("$SYSEXT" "--root=$r" merge ::: "$SYSEXT" "--root=$r" unmerge) ;;
	floor) CMD+=("$FLOOR" merge "$r" "$n" ::: "$FLOOR" unmerge "$r") ;;
	esac
}

# systemd-sysext takes part up to SYSEXT_MAX_N extensions: 252 merges no more than about
# 110 directory extensions (and still exits 0), 262 fails from 102 on. Above it, the row
# compares extmerge with the floor only.
SYSEXT_MAX_N=${SYSEXT_MAX_N:-100}
tools_for() { # tools_for N: sets TOOLS to the contenders at N
	if (($1 > SYSEXT_MAX_N)); then TOOLS=(extmerge floor); else TOOLS=(extmerge sysext floor); fi
}
for n in $NS; do
	make_root "$FIXTURES/$n" "$n"
done

# Untimed verification (and warm-up) round, with the tools' messages shown on failure.
for n in $NS; do
	r=$FIXTURES/$n
	tools_for "$n"
	for t in "${TOOLS[@]}"; do
		cmd_for "$t" "$n"
		if ! "$RUNNER" "${CMD[@]}" >/dev/null; then
			echo "bench.sh: verification of $t at N=$n failed; its output:" >&2
			case $t in
			extmerge) "$EXTMERGE" --root="$r" --class=sysext merge || true ;;
			sysext) "$SYSEXT" --root="$r" merge || true ;;
			floor) "$FLOOR" merge "$r" "$n" || true ;;
			esac
			exit 1
		fi
	done
	# Same merged view from both tools: the extension files and the host's own.
	((n <= SYSEXT_MAX_N)) || continue
	"$EXTMERGE" --root="$r" --class=sysext merge 2>/dev/null
	a=$(cd "$r/usr" && find . | LC_ALL=C sort | grep -v '^./.systemd-sysext\|^./.extmerge' || true)
	"$EXTMERGE" --root="$r" --class=sysext unmerge 2>/dev/null
	"$SYSEXT" --root="$r" merge 2>/dev/null
	b=$(cd "$r/usr" && find . | LC_ALL=C sort | grep -v '^./.systemd-sysext\|^./.extmerge' || true)
	"$SYSEXT" --root="$r" unmerge 2>/dev/null
	if [[ $a != "$b" ]]; then
		echo "bench.sh: N=$n: extmerge and systemd-sysext show different /usr trees:" >&2
		diff <(echo "$a") <(echo "$b") >&2 || true
		exit 1
	fi
	for f in usr/bin/host-tool usr/share/host/data; do
		[[ -e $r/$f ]] || { echo "bench.sh: $r/$f missing after unmerge" >&2; exit 1; }
	done
done

# Timing helper floor for RSS: ru_maxrss includes the runner's pages before exec.
read -r _ _ true_rss true_cpu < <(${PRIO_CMD[@]+"${PRIO_CMD[@]}"} "$RUNNER" /bin/true ::: /bin/true)

RAW=$OUT/raw.tsv
printf 'round\tn\ttool\tmerge_ns\tunmerge_ns\ttotal_ns\tmaxrss_kib\tcpu_ns\n' >"$RAW"
load=$(cut -d' ' -f1-3 /proc/loadavg)
start=$(date +%s)
for ((round = 0; round < ROUNDS; round++)); do
	for n in $NS; do
		tools_for "$n"
		for ((k = 0; k < ${#TOOLS[@]}; k++)); do
			t=${TOOLS[$(((round + k) % ${#TOOLS[@]}))]}
			cmd_for "$t" "$n"
			m= u= rss= cpu=
			read -r m u rss cpu < <(${PRIO_CMD[@]+"${PRIO_CMD[@]}"} "$RUNNER" "${CMD[@]}") || true
			[[ -n $cpu ]] || { echo "bench.sh: $t N=$n round $round failed" >&2; exit 1; }
			printf '%d\t%d\t%s\t%d\t%d\t%d\t%d\t%d\n' "$round" "$n" "$t" "$m" "$u" $((m + u)) "$rss" $((cpu * 1000)) >>"$RAW"
		done
	done
done
elapsed=$(($(date +%s) - start))

# In-process syscall cost (no process start), for the notes.
declare -A LOOP
for n in $NS; do
	LOOP[$n]=$(${PRIO_CMD[@]+"${PRIO_CMD[@]}"} "$FLOOR" loop "$FIXTURES/$n" "$n" 200)
done

stats() { # stats N TOOL COLUMN -> "median min" in ns
	awk -F'\t' -v n="$1" -v t="$2" -v c="$3" 'NR > 1 && $2 == n && $3 == t { print $c }' "$RAW" |
		sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) { print "- -"; exit } m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m, v[1] }'
}
peak() { # peak N TOOL -> max ru_maxrss KiB
	awk -F'\t' -v n="$1" -v t="$2" 'NR > 1 && $2 == n && $3 == t && $7 > m { m = $7 } END { print m + 0 }' "$RAW"
}
ms() { awk -v x="$1" 'BEGIN { if (x == "-") print "—"; else printf "%.2f", x / 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "—"; else printf "%.2f", a / b }'; }
paired() { # paired N A B -> median over rounds of A's total / B's total (same round)
	awk -F'\t' -v n="$1" -v a="$2" -v b="$3" 'NR > 1 && $2 == n { v[$1, $3] = $6; r[$1] = 1 }
		END { for (k in r) if (v[k, b] > 0 && v[k, a] > 0) print v[k, a] / v[k, b] }' "$RAW" | sort -g |
		awk '{ v[NR] = $1 } END { if (NR == 0) print "—"; else { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f", m } }'
}

kernel=$(uname -r)
sysver=$("$SYSEXT" --version | head -1)
{
	echo "### extmerge vs systemd-sysext: merge + unmerge of N directory sysexts"
	echo
	echo "$ROUNDS rounds, interleaved (order rotating), run under '${PRIO:-normal scheduling}', $(nproc) CPUs, Linux $kernel, $sysver, $elapsed s; load average before: $load."
	echo "extmerge: $EXTMERGE ($(file -b "$EXTMERGE" | grep -o 'statically linked\|dynamically linked\|static-pie linked' | head -1))."
	echo "Times are one merge process + one unmerge process, wall clock, process start included."
	echo
	echo "| N | extmerge median (ms) | systemd-sysext median (ms) | floor median (ms) | sysext/extmerge ratio | extmerge/floor ratio | extmerge/floor paired | extmerge peak RSS (KiB) | systemd-sysext peak RSS (KiB) |"
	echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for n in $NS; do
		read -r em emin < <(stats "$n" extmerge 6)
		read -r sm smin < <(stats "$n" sysext 6)
		read -r fm fmin < <(stats "$n" floor 6)
		sp=$(peak "$n" sysext)
		((sp > 0)) || sp=—
		echo "| $n | $(ms "$em") | $(ms "$sm") | $(ms "$fm") | $(ratio "$sm" "$em") | $(ratio "$em" "$fm") | $(paired "$n" extmerge floor) | $(peak "$n" extmerge) | $sp |"
	done
	echo
	echo "Minimum wall time, per-phase medians, CPU time, and the floor's syscalls alone (ms):"
	echo
	echo "| N | extmerge min | systemd-sysext min | floor min | extmerge merge / unmerge | systemd-sysext merge / unmerge | floor merge / unmerge | extmerge CPU | systemd-sysext CPU | floor CPU | floor syscalls in one process, median (min) |"
	echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for n in $NS; do
		read -r _ emin < <(stats "$n" extmerge 6)
		read -r _ smin < <(stats "$n" sysext 6)
		read -r _ fmin < <(stats "$n" floor 6)
		read -r emm _ < <(stats "$n" extmerge 4)
		read -r eum _ < <(stats "$n" extmerge 5)
		read -r smm _ < <(stats "$n" sysext 4)
		read -r sum _ < <(stats "$n" sysext 5)
		read -r fmm _ < <(stats "$n" floor 4)
		read -r fum _ < <(stats "$n" floor 5)
		read -r ec _ < <(stats "$n" extmerge 8)
		read -r sc _ < <(stats "$n" sysext 8)
		read -r fc _ < <(stats "$n" floor 8)
		read -r lm lmin <<<"${LOOP[$n]}"
		echo "| $n | $(ms "$emin") | $(ms "$smin") | $(ms "$fmin") | $(ms "$emm") / $(ms "$eum") | $(ms "$smm") / $(ms "$sum") | $(ms "$fmm") / $(ms "$fum") | $(ms "$ec") | $(ms "$sc") | $(ms "$fc") | $(ms "$lm") ($(ms "$lmin")) |"
	done
	echo
	echo "Peak RSS of the floor: $(for n in $NS; do printf '%s KiB (N=%s) ' "$(peak "$n" floor)" "$n"; done)."
	echo "Baseline for two process starts (/bin/true twice through the same runner): CPU $(ms $((true_cpu * 1000))) ms, RSS $true_rss KiB;"
	echo "RSS includes the runner's own pages before exec (it is static and small)."
} | tee "$OUT/results.md"
