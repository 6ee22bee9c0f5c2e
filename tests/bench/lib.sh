# Shared by the host benchmarks (bench.sh, bench-images.sh, bench-target.sh); sourced.
#
# Sets PRIO and PRIO_CMD: the timed processes run under SCHED_FIFO priority 10 ($PRIO,
# default "chrt -f 10"; "nice -n -20" where there is no real-time budget, e.g. a cgroup
# without cpu.rt_runtime; "" for normal scheduling), so that other load on a shared
# machine delays their wake-ups less; every contender gets the same.
PRIO=${PRIO-chrt -f 10}
if [[ $PRIO == chrt* ]] && ! $PRIO true 2>/dev/null; then
	PRIO="nice -n -20"
fi
read -r -a PRIO_CMD <<<"$PRIO"
#
# bench_namespace "$0" "$@": the first time round (outside), builds the shipped extmerge
# (static, size-tuned; unless $EXTMERGE names another build), tests/bench/runner.c
# (static, so its pages add little to the measured RSS) and each C file in
# ${BENCH_C[@]} into $OUT, then re-executes the script in a private mount namespace.
# The second time round (inside), makes / shared again in peer groups of its own (as
# on a systemd host: systemd-sysext relies on propagation), mounts a fresh /run and a
# tmpfs on $FIXTURES, and sets EXTMERGE and RUNNER. Needs HERE, REPO, OUT, FIXTURES.
bench_namespace() {
	if [[ -z ${EXTMERGE_BENCH_IN_NS:-} ]]; then
		# Build outside the namespace (cargo, gcc see the normal /run and /tmp).
		mkdir -p "$OUT" "$FIXTURES"
		[[ -n ${EXTMERGE:-} ]] || (cd "$REPO" && RUSTFLAGS='-C target-feature=+crt-static' \
			cargo build --profile initrd --target x86_64-unknown-linux-gnu --quiet --bin extmerge)
		gcc -O2 -Wall -static -o "$OUT/runner" "$HERE/runner.c"
		local c
		for c in ${BENCH_C[@]+"${BENCH_C[@]}"}; do
			gcc -O2 -Wall -o "$OUT/${c%.c}" "$HERE/$c"
		done
		EXTMERGE_BENCH_IN_NS=1 exec unshare -m --propagation private -- "$@"
	fi
	mount --make-rshared /
	mount -t tmpfs -o mode=0755 tmpfs /run
	mount -t tmpfs -o mode=0755 tmpfs "$FIXTURES"
	EXTMERGE=${EXTMERGE:-$REPO/target/x86_64-unknown-linux-gnu/initrd/extmerge}
	RUNNER=$OUT/runner
}
