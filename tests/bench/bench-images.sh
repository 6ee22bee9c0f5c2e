#!/usr/bin/env bash
# Benchmark: merge + unmerge of 1, 10 and 50 raw erofs images (bare file systems, no
# partition table, no verity) with extmerge, with Debian's systemd-sysext (v252) and with
# the bare syscalls (tests/bench/floor-images.c), on the same images, interleaved in each
# round. Prints a Markdown table and writes it to target/bench/images.md (raw samples:
# target/bench/images-raw.tsv). The host kernel's loop driver is used; no dm-verity here
# (see bench-verity-vm.sh for that).
#
#   sudo tests/bench/bench-images.sh              # ROUNDS=30, ROUNDS_LARGE=10 (N > 10)
#   ROUNDS=50 ROUNDS_LARGE=5 NS="1 10 50" tests/bench/bench-images.sh
#   EXTMERGE=/path/to/extmerge tests/bench/bench-images.sh   # another build; no cargo
#   SYSTEMD_SYSEXT=/path/to/systemd-sysext tests/bench/bench-images.sh
#
# Fixtures: for each N a root ROOT=/tmp/extmerge-bench-images/imgN (a tmpfs) with
# etc/os-release, a host /usr, and N images ROOT/var/lib/extensions/eNNN.raw made with
# `mkfs.erofs --quiet`, each holding usr/lib/extension-release.d/extension-release.eNNN
# (ID=_any), usr/bin/eNNN-tool and three files under usr/share/eNNN. systemd-sysext 252
# dissects a bare erofs image as a "generic root" file system and accepts it (checked
# by the verification round below).
#
# Method: as bench.sh. Every measurement is one merge process followed by one unmerge
# process, started by tests/bench/runner.c (fork+execv, wait4, CLOCK_MONOTONIC around
# each), process start-up included. Untimed checks by the runner between and after:
# a file of the first and of the last image is visible under ROOT/usr after the merge
# and gone after the unmerge; after the merge exactly N loop devices are bound with a
# backing file under ROOT/var/lib/extensions/ (/sys/block/loop*/loop/backing_file), and
# after the unmerge none is (polled for up to 5 s; the time until then is reported as
# "settle", it is not part of the unmerge time). Any failure aborts the run. The order of
# the three contenders rotates from round to round. N=50 costs systemd-sysext ~3 s per
# round, so N > 10 gets ROUNDS_LARGE rounds (default 10) instead of ROUNDS; the table
# says how many. Reported: medians (and minima) of wall time, per image = median / N,
# ratios of medians of this run, median CPU time (user+sys from wait4), and the cost of
# each added image (difference of medians over difference of N: smallest to largest N,
# and between the two largest, where it is also given beyond the floor's).
#
# Timed processes run under SCHED_FIFO 10 (PRIO, as in bench.sh). Runs as root in a
# private mount namespace (unshare -m); mounts do not leak to the host; loop devices are
# global, and the run fails if one of ours stays bound.
set -euo pipefail

ROUNDS=${ROUNDS:-30}
ROUNDS_LARGE=${ROUNDS_LARGE:-10}
NS=${NS:-"1 10 50"}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/bench/lib.sh
. "$HERE/lib.sh"
REPO=$(cd "$HERE/../.." && pwd)
OUT=$REPO/target/bench
SYSEXT=${SYSTEMD_SYSEXT:-/usr/bin/systemd-sysext}
FIXTURES=/tmp/extmerge-bench-images

if [[ $EUID -ne 0 ]]; then
	echo "bench-images.sh: needs root (mount namespaces, loop devices, overlayfs)" >&2
	exit 1
fi
for t in mkfs.erofs; do
	command -v "$t" >/dev/null || { echo "bench-images.sh: $t missing (apt-get install erofs-utils)" >&2; exit 1; }
done

BENCH_C=(floor-images.c)
bench_namespace "$0" "$@"

# --- inside a private mount namespace from here on (see bench.sh for why /run) ---
FLOOR=$OUT/floor-images
[[ -x $SYSEXT ]] || { echo "bench-images.sh: $SYSEXT not found" >&2; exit 1; }

rounds_for() { if (($1 > 10)); then echo "$ROUNDS_LARGE"; else echo "$ROUNDS"; fi; }

# The images, built once (largest N), copied into each root.
maxn=0
for n in $NS; do if ((n > maxn)); then maxn=$n; fi; done
mkdir -p "$FIXTURES/images"
for ((i = 0; i < maxn; i++)); do
	printf -v e 'e%03d' "$i"
	s=$FIXTURES/src/$e
	mkdir -p "$s/usr/lib/extension-release.d" "$s/usr/bin" "$s/usr/share/$e/doc"
	echo 'ID=_any' >"$s/usr/lib/extension-release.d/extension-release.$e"
	printf '#!/bin/sh\necho %s\n' "$e" >"$s/usr/bin/$e-tool"
	chmod +x "$s/usr/bin/$e-tool"
	echo "$e" >"$s/usr/share/$e/data"
	echo "$e" >"$s/usr/share/$e/doc/README"
	echo "$e" >"$s/usr/share/$e/doc/COPYING"
	mkfs.erofs --quiet "$FIXTURES/images/$e.raw" "$s"
done
rm -rf "$FIXTURES/src"
img_size=$(stat -c %s "$FIXTURES/images/e000.raw")

make_root() {
	local r=$1 n=$2 i e
	mkdir -p "$r/etc" "$r/usr/bin" "$r/usr/share/host" "$r/usr/lib" "$r/var/lib/extensions"
	printf 'ID=debian\nVERSION_ID=12\nSYSEXT_LEVEL=1.0\n' >"$r/etc/os-release"
	echo host >"$r/usr/bin/host-tool"
	echo host >"$r/usr/share/host/data"
	for ((i = 0; i < n; i++)); do
		printf -v e 'e%03d' "$i"
		cp "$FIXTURES/images/$e.raw" "$r/var/lib/extensions/"
	done
}

# cmd_for TOOL N: sets CMD to the runner argument list (checks, merge ::: unmerge).
cmd_for() {
	local tool=$1 n=$2 r=$FIXTURES/img$2 last
	printf -v last 'e%03d' $((n - 1))
	CMD=(-e "$r/usr/bin/e000-tool" -e "$r/usr/share/$last/data" -L "img$n/var/lib/extensions/:$n")
	case $tool in
	extmerge) CMD+=("$EXTMERGE" "--root=$r" --class=sysext merge ::: "$EXTMERGE" "--root=$r" --class=sysext unmerge) ;;
	sysext) CMD+=("$SYSEXT" "--root=$r" merge ::: "$SYSEXT" "--root=$r" unmerge) ;;
	floor) CMD+=("$FLOOR" merge "$r" "$n" ::: "$FLOOR" unmerge "$r") ;;
	esac
}

bound_loops() { # bound_loops SUBSTR -> count
	local f c=0
	for f in /sys/block/loop*/loop/backing_file; do
		[[ -r $f ]] && [[ $(<"$f") == *"$1"* ]] && c=$((c + 1))
	done
	echo "$c"
}

TOOLS=(extmerge sysext floor)
for n in $NS; do
	make_root "$FIXTURES/img$n" "$n"
done
if (($(bound_loops extmerge-bench-images) > 0)); then
	echo "bench-images.sh: loop devices on $FIXTURES are bound already" >&2
	exit 1
fi

# Untimed verification (and warm-up) round, with the tools' messages shown on failure.
for n in $NS; do
	r=$FIXTURES/img$n
	for t in "${TOOLS[@]}"; do
		cmd_for "$t" "$n"
		if ! "$RUNNER" "${CMD[@]}" >/dev/null; then
			echo "bench-images.sh: verification of $t at N=$n failed; its output:" >&2
			case $t in
			extmerge) "$EXTMERGE" --root="$r" --class=sysext merge || true ;;
			sysext) "$SYSEXT" --root="$r" merge || true ;;
			floor) "$FLOOR" merge "$r" "$n" || true ;;
			esac
			exit 1
		fi
	done
	# Same merged view from both tools: the extension files and the host's own.
	"$EXTMERGE" --root="$r" --class=sysext merge 2>/dev/null
	a=$(cd "$r/usr" && find . | LC_ALL=C sort | grep -v '^./.systemd-sysext\|^./.extmerge' || true)
	"$EXTMERGE" --root="$r" --class=sysext unmerge 2>/dev/null
	"$SYSEXT" --root="$r" merge 2>/dev/null
	b=$(cd "$r/usr" && find . | LC_ALL=C sort | grep -v '^./.systemd-sysext\|^./.extmerge' || true)
	"$SYSEXT" --root="$r" unmerge 2>/dev/null
	if [[ $a != "$b" ]]; then
		echo "bench-images.sh: N=$n: extmerge and systemd-sysext show different /usr trees:" >&2
		diff <(echo "$a") <(echo "$b") >&2 || true
		exit 1
	fi
	for f in usr/bin/host-tool usr/share/host/data; do
		[[ -e $r/$f ]] || { echo "bench-images.sh: $r/$f missing after unmerge" >&2; exit 1; }
	done
	sleep 0.2
	if (($(bound_loops "img$n/var/lib/extensions/") > 0)); then
		echo "bench-images.sh: N=$n: loop devices still bound after the verification merges" >&2
		exit 1
	fi
done

RAW=$OUT/images-raw.tsv
printf 'round\tn\ttool\tmerge_ns\tunmerge_ns\ttotal_ns\tmaxrss_kib\tcpu_ns\tsettle_ns\n' >"$RAW"
load=$(cut -d' ' -f1-3 /proc/loadavg)
start=$(date +%s)
maxrounds=$ROUNDS
if ((ROUNDS_LARGE > maxrounds)); then maxrounds=$ROUNDS_LARGE; fi
for ((round = 0; round < maxrounds; round++)); do
	for n in $NS; do
		((round < $(rounds_for "$n"))) || continue
		for ((k = 0; k < 3; k++)); do
			t=${TOOLS[$(((round + k) % 3))]}
			cmd_for "$t" "$n"
			m= u= rss= cpu= settle=
			read -r m u rss cpu settle < <(${PRIO_CMD[@]+"${PRIO_CMD[@]}"} "$RUNNER" "${CMD[@]}") || true
			[[ -n $settle ]] || { echo "bench-images.sh: $t N=$n round $round failed" >&2; exit 1; }
			printf '%d\t%d\t%s\t%d\t%d\t%d\t%d\t%d\t%d\n' "$round" "$n" "$t" "$m" "$u" $((m + u)) "$rss" $((cpu * 1000)) "$settle" >>"$RAW"
		done
	done
done
elapsed=$(($(date +%s) - start))
for n in $NS; do
	if (($(bound_loops "img$n/var/lib/extensions/") > 0)); then
		echo "bench-images.sh: loop devices still bound at the end:" >&2
		grep -H . /sys/block/loop*/loop/backing_file >&2 || true
		exit 1
	fi
done

# In-process syscall cost of the floor (no process start), for the notes.
declare -A LOOP
for n in $NS; do
	LOOP[$n]=$(${PRIO_CMD[@]+"${PRIO_CMD[@]}"} "$FLOOR" loop "$FIXTURES/img$n" "$n" $((n > 10 ? 20 : 200)))
done

stats() { # stats N TOOL COLUMN -> "median min max" in ns
	awk -F'\t' -v n="$1" -v t="$2" -v c="$3" 'NR > 1 && $2 == n && $3 == t { print $c }' "$RAW" |
		sort -n | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m, v[1], v[NR] }'
}
peak() {
	awk -F'\t' -v n="$1" -v t="$2" 'NR > 1 && $2 == n && $3 == t && $7 > m { m = $7 } END { print m + 0 }' "$RAW"
}
ms() { awk -v x="$1" 'BEGIN { printf "%.2f", x / 1e6 }'; }
per() { awk -v x="$1" -v n="$2" 'BEGIN { printf "%.2f", x / n / 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }

kernel=$(uname -r)
sysver=$("$SYSEXT" --version | head -1)
{
	echo "### extmerge vs systemd-sysext: merge + unmerge of N raw erofs images (host, no verity)"
	echo
	echo "Rounds: $ROUNDS for N ≤ 10, $ROUNDS_LARGE for N > 10; interleaved (order rotating), run under '${PRIO:-normal scheduling}', $(nproc) CPUs, Linux $kernel, $sysver, $elapsed s; load average before: $load."
	echo "extmerge: $EXTMERGE ($(file -b "$EXTMERGE" | grep -o 'statically linked\|dynamically linked\|static-pie linked' | head -1)). Images: bare erofs, $img_size bytes each (mkfs.erofs --quiet), on tmpfs; loop devices with direct I/O where the tool asks for it."
	echo "Times are one merge process + one unmerge process, wall clock, process start included; per image = median / N."
	echo
	echo "| N | rounds | extmerge median (ms) | per image | systemd-sysext median (ms) | per image | floor median (ms) | per image | sysext/extmerge | extmerge/floor |"
	echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for n in $NS; do
		read -r em _ < <(stats "$n" extmerge 6)
		read -r sm _ < <(stats "$n" sysext 6)
		read -r fm _ < <(stats "$n" floor 6)
		echo "| $n | $(rounds_for "$n") | $(ms "$em") | $(per "$em" "$n") | $(ms "$sm") | $(per "$sm" "$n") | $(ms "$fm") | $(per "$fm" "$n") | $(ratio "$sm" "$em") | $(ratio "$em" "$fm") |"
	done
	# Per added image: between the smallest and the largest N, and between the two largest
	# (above the fixed costs of a run, where start-up no longer blurs it); and what
	# extmerge adds to the floor's per image, between the two largest N.
	read -r n0 n1 <<<"$(echo $NS | tr ' ' '\n' | sort -n | sed -n '1p;$p' | tr '\n' ' ')"
	# shellcheck disable=SC2086 # NS is a list of numbers
	read -r nm <<<"$(printf '%s\n' $NS | sort -n | tail -n 2 | head -n 1)"
	slope() { # slope TOOL FROM TO -> ms per added image between N=FROM and N=TO
		local a b
		read -r a _ < <(stats "$2" "$1" 6)
		read -r b _ < <(stats "$3" "$1" 6)
		awk -v a="$a" -v b="$b" -v d=$(($3 - $2)) 'BEGIN { printf "%.3f", (b - a) / d / 1e6 }'
	}
	if [[ -n $n1 && $n1 != "$n0" ]]; then
		echo
		echo "Cost of each added image (difference of the medians at N=$n1 and N=$n0, divided by $((n1 - n0))): extmerge $(slope extmerge "$n0" "$n1") ms, systemd-sysext $(slope sysext "$n0" "$n1") ms, floor $(slope floor "$n0" "$n1") ms."
		if [[ $nm != "$n0" ]]; then
			e=$(slope extmerge "$nm" "$n1")
			f=$(slope floor "$nm" "$n1")
			echo "Between N=$nm and N=$n1: extmerge $e ms, systemd-sysext $(slope sysext "$nm" "$n1") ms, floor $f ms per added image; extmerge beyond the floor: $(awk -v e="$e" -v f="$f" 'BEGIN { printf "%.3f", e - f }') ms per image."
		fi
	fi
	echo
	echo "Minimum wall time, per-phase medians (merge / unmerge), CPU time (user+sys, both processes), settle (unmerge exit → last loop device unbound, max over rounds), in ms; peak RSS in KiB:"
	echo
	echo "| N | extmerge min | systemd-sysext min | floor min | extmerge merge / unmerge | systemd-sysext merge / unmerge | floor merge / unmerge | extmerge CPU | systemd-sysext CPU | floor CPU | settle max e / s / f | peak RSS e / s / f | floor syscalls in one process, median (min) |"
	echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for n in $NS; do
		read -r _ emin _ < <(stats "$n" extmerge 6)
		read -r _ smin _ < <(stats "$n" sysext 6)
		read -r _ fmin _ < <(stats "$n" floor 6)
		read -r emm _ < <(stats "$n" extmerge 4)
		read -r eum _ < <(stats "$n" extmerge 5)
		read -r smm _ < <(stats "$n" sysext 4)
		read -r sum _ < <(stats "$n" sysext 5)
		read -r fmm _ < <(stats "$n" floor 4)
		read -r fum _ < <(stats "$n" floor 5)
		read -r ec _ < <(stats "$n" extmerge 8)
		read -r sc _ < <(stats "$n" sysext 8)
		read -r fc _ < <(stats "$n" floor 8)
		read -r _ _ es < <(stats "$n" extmerge 9)
		read -r _ _ ss < <(stats "$n" sysext 9)
		read -r _ _ fs < <(stats "$n" floor 9)
		read -r lm lmin <<<"${LOOP[$n]}"
		echo "| $n | $(ms "$emin") | $(ms "$smin") | $(ms "$fmin") | $(ms "$emm") / $(ms "$eum") | $(ms "$smm") / $(ms "$sum") | $(ms "$fmm") / $(ms "$fum") | $(ms "$ec") | $(ms "$sc") | $(ms "$fc") | $(ms "$es") / $(ms "$ss") / $(ms "$fs") | $(peak "$n" extmerge) / $(peak "$n" sysext) / $(peak "$n" floor) | $(ms "$lm") ($(ms "$lmin")) |"
	done
	echo
	echo "Floor (tests/bench/floor-images.c): per image LOOP_CTL_GET_FREE + LOOP_CONFIGURE (ro, autoclear, direct I/O) + fsopen(\"erofs\")/fsmount (detached), then one overlay with lowerdir+ (detached layers, Linux 6.15+) and move_mount; unmerge = umount2(MNT_DETACH)."
} | tee "$OUT/images.md"
