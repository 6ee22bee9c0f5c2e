#!/bin/sh
# Guest side of tests/bench/bench-verity-vm.sh (runs inside the vm-run VM as root, busybox
# sh). Not meant to be run on the host.
#
#   bench-verity-guest.sh run ROUNDS "NS"       the benchmark (vm-run's entry point)
#   bench-verity-guest.sh floor-merge ROOT N    the baseline's merge  (timed by the runner)
#   bench-verity-guest.sh floor-unmerge ROOT N  the baseline's unmerge (timed by the runner)
#
# Fixtures (built on the host): /bench/fix/vN/ for each N, a root with etc/os-release, a
# host /usr and N images var/lib/extensions/eNNN.raw (bare erofs) with eNNN.roothash and
# eNNN.verity sidecars. Programs: /usr/bin/extmerge (static), /usr/bin/veritysetup (+ its
# libraries), /usr/bin/runner (tests/bench/runner.c, static).
#
# The baseline does with the standard tools what a verity sysext merge needs, one process
# per step: per image `veritysetup open IMAGE eNNN HASHFILE ROOTHASH` (libcryptsetup sets
# up the two loop devices itself) and `mount -t erofs -o ro /dev/mapper/eNNN DIR`, then one
# `mount -t overlay -o ro,lowerdir=...` over ROOT/usr; teardown: `umount` the overlay,
# per image `umount` and `veritysetup close`. The mount points are made before timing.
# No subshells in the timed part (a fork costs a lot under TCG).
#
# Writes /out/verity-raw.tsv (one line per measurement) and /out/verity-env.txt.
set -u
SELF=$(readlink -f "$0")
FIX=/tmp/fix
EXT=/usr/bin/extmerge
RUNNER=/usr/bin/runner

# name I -> sets NAME to eNNN (no subshell)
name() {
	if [ "$1" -lt 10 ]; then NAME=e00$1; elif [ "$1" -lt 100 ]; then NAME=e0$1; else NAME=e$1; fi
}

floor_merge() {
	r=$1 n=$2 i=0 lower=
	while [ "$i" -lt "$n" ]; do
		name "$i"
		d=$r/var/lib/extensions/$NAME
		read -r h <"$d.roothash"
		veritysetup open "$d.raw" "$NAME" "$d.verity" "$h" || exit 1
		mount -t erofs -o ro /dev/mapper/"$NAME" /tmp/floor/"$NAME" || exit 1
		lower=/tmp/floor/$NAME/usr${lower:+:$lower}
		i=$((i + 1))
	done
	mount -t overlay sysext -o "ro,lowerdir=$lower:$r/usr" "$r/usr" || exit 1
}

floor_unmerge() {
	r=$1 n=$2 i=0
	umount "$r/usr" || exit 1
	while [ "$i" -lt "$n" ]; do
		name "$i"
		umount /tmp/floor/"$NAME" || exit 1
		veritysetup close "$NAME" || exit 1
		i=$((i + 1))
	done
}

run_one() { # run_one TOOL N -> prints the runner's line or fails
	tool=$1 n=$2
	r=$FIX/v$n
	name $((n - 1))
	last=$NAME
	case $tool in
	extmerge)
		"$RUNNER" -e "$r/usr/bin/e000-tool" -e "$r/usr/share/$last/data" \
			-L "v$n/var/lib/extensions/:$((n * 2))" -D "$n" \
			"$EXT" "--root=$r" --class=sysext merge ::: "$EXT" "--root=$r" --class=sysext unmerge
		;;
	floor)
		"$RUNNER" -e "$r/usr/bin/e000-tool" -e "$r/usr/share/$last/data" \
			-L "v$n/var/lib/extensions/:$((n * 2))" -D "$n" \
			/bin/sh "$SELF" floor-merge "$r" "$n" ::: /bin/sh "$SELF" floor-unmerge "$r" "$n"
		;;
	esac
}

bench() {
	rounds=$1 ns=$2
	cp -a /bench/fix "$FIX"
	maxn=0
	for n in $ns; do [ "$n" -gt "$maxn" ] && maxn=$n; done
	i=0
	while [ "$i" -lt "$maxn" ]; do
		name "$i"
		mkdir -p /tmp/floor/"$NAME"
		i=$((i + 1))
	done
	{
		echo "kernel: $(uname -r)"
		echo "cpus: $(grep -c ^processor /proc/cpuinfo) ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
		echo "veritysetup: $(veritysetup --version)"
		echo "image size: $(stat -c %s "$FIX/v1/var/lib/extensions/e000.raw") bytes, hash tree: $(stat -c %s "$FIX/v1/var/lib/extensions/e000.verity") bytes"
	} >/out/verity-env.txt
	# Verification (and warm-up) round, with messages on failure.
	for n in $ns; do
		for t in extmerge floor; do
			if ! run_one "$t" "$n" >/dev/null; then
				echo "bench-verity-guest: verification of $t at N=$n failed" >&2
				r=$FIX/v$n
				case $t in
				extmerge) "$EXT" "--root=$r" --class=sysext merge ;;
				floor) sh -x "$SELF" floor-merge "$r" "$n" ;;
				esac
				ls /sys/block
				exit 1
			fi
		done
		# Same merged /usr from both.
		r=$FIX/v$n
		"$EXT" "--root=$r" --class=sysext merge 2>/dev/null
		(cd "$r/usr" && find . | grep -v '^./.extmerge\|^./.systemd-sysext' | sort) >/tmp/a
		"$EXT" "--root=$r" --class=sysext unmerge 2>/dev/null
		sh "$SELF" floor-merge "$r" "$n"
		(cd "$r/usr" && find . | sort) >/tmp/b
		sh "$SELF" floor-unmerge "$r" "$n"
		if ! cmp -s /tmp/a /tmp/b; then
			echo "bench-verity-guest: N=$n: extmerge and the baseline show different /usr trees" >&2
			diff /tmp/a /tmp/b >&2
			exit 1
		fi
		echo "verified N=$n (both tools: files of the first and last image visible, $n dm-verity devices and $((n * 2)) loop devices while merged, none after)"
	done
	printf 'round\tn\ttool\tmerge_ns\tunmerge_ns\ttotal_ns\tmaxrss_kib\tcpu_ns\tsettle_ns\n' >/out/verity-raw.tsv
	start=$(cut -d. -f1 /proc/uptime)
	round=0
	while [ "$round" -lt "$rounds" ]; do
		for n in $ns; do
			if [ $((round % 2)) = 0 ]; then order="extmerge floor"; else order="floor extmerge"; fi
			for t in $order; do
				line=$(run_one "$t" "$n") || { echo "bench-verity-guest: $t N=$n round $round failed" >&2; exit 1; }
				set -- $line
				[ $# = 5 ] || { echo "bench-verity-guest: runner said '$line'" >&2; exit 1; }
				printf '%d\t%d\t%s\t%s\t%s\t%d\t%s\t%d\t%s\n' "$round" "$n" "$t" "$1" "$2" $(($1 + $2)) "$3" $(($4 * 1000)) "$5" >>/out/verity-raw.tsv
			done
		done
		round=$((round + 1))
		echo "round $round/$rounds done"
	done
	echo "elapsed: $(($(cut -d. -f1 /proc/uptime) - start)) s" >>/out/verity-env.txt
}

case ${1:-} in
floor-merge) floor_merge "$2" "$3" ;;
floor-unmerge) floor_unmerge "$2" "$3" ;;
run) bench "$2" "$3" ;;
*)
	echo "usage: bench-verity-guest.sh run ROUNDS NS | floor-merge ROOT N | floor-unmerge ROOT N" >&2
	exit 2
	;;
esac
