/* Timing helper for tests/bench/bench.sh.
 *
 *   runner [-e PATH]... CMD1 [ARGS...] ::: CMD2 [ARGS...]
 *
 * Runs CMD1 (the merge), checks that every PATH exists, runs CMD2 (the unmerge), checks
 * that no PATH exists any more. Each command is started with fork + execv (absolute path,
 * stdout/stderr to /dev/null) and reaped with wait4; the clock (CLOCK_MONOTONIC) runs from
 * just before fork to just after wait4, so process start-up and exit are included. The
 * checks between the two commands are not timed.
 *
 * Prints one line:  <merge_ns> <unmerge_ns> <maxrss_kib> <cpu_us>
 * where maxrss_kib is the larger ru_maxrss of the two children and cpu_us the user+system
 * CPU time of both (wait4 reports the child and its reaped descendants, so
 * systemd-sysext's (sd-merge) subprocess counts).
 * ru_maxrss also covers this helper's own pages between fork and exec, so the helper is
 * linked statically and kept tiny (see bench.sh, which reports that floor with /bin/true).
 *
 * Exits 2 (and says why on stderr) if a command fails or a check fails, so the benchmark
 * cannot silently time failures.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int devnull = -1;

static long long now_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Runs argv; returns elapsed ns, stores ru_maxrss (KiB) in *rss. Dies on failure. */
static long long run(char **argv, long *rss, long long *cpu_us) {
	struct rusage ru;
	int status;
	long long t0 = now_ns();
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		exit(2);
	}
	if (pid == 0) {
		dup2(devnull, 1);
		dup2(devnull, 2);
		execv(argv[0], argv);
		_exit(127);
	}
	if (wait4(pid, &status, 0, &ru) != pid) {
		perror("wait4");
		exit(2);
	}
	long long t1 = now_ns();
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "runner: %s", argv[0]);
		for (char **a = argv + 1; *a; a++)
			fprintf(stderr, " %s", *a);
		fprintf(stderr, ": failed (status 0x%x)\n", status);
		exit(2);
	}
	*rss = ru.ru_maxrss;
	*cpu_us += (long long)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000LL +
		   ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
	return t1 - t0;
}

int main(int argc, char **argv) {
	const char *checks[16];
	int nchecks = 0, i = 1;
	while (i + 1 < argc && strcmp(argv[i], "-e") == 0) {
		if (nchecks == 16) {
			fprintf(stderr, "runner: too many -e\n");
			return 2;
		}
		checks[nchecks++] = argv[i + 1];
		i += 2;
	}
	char **cmd1 = argv + i, **cmd2 = NULL;
	for (; i < argc; i++) {
		if (strcmp(argv[i], ":::") == 0) {
			argv[i] = NULL;
			cmd2 = argv + i + 1;
			break;
		}
	}
	if (!cmd1[0] || !cmd2 || !cmd2[0]) {
		fprintf(stderr, "usage: runner [-e PATH]... CMD1 [ARGS...] ::: CMD2 [ARGS...]\n");
		return 2;
	}
	devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (devnull < 0) {
		perror("/dev/null");
		return 2;
	}
	long rss1, rss2;
	long long cpu = 0;
	long long t_merge = run(cmd1, &rss1, &cpu);
	for (int c = 0; c < nchecks; c++) {
		if (access(checks[c], F_OK) != 0) {
			fprintf(stderr, "runner: %s: missing after %s\n", checks[c], cmd1[0]);
			return 2;
		}
	}
	long long t_unmerge = run(cmd2, &rss2, &cpu);
	for (int c = 0; c < nchecks; c++) {
		if (access(checks[c], F_OK) == 0) {
			fprintf(stderr, "runner: %s: still there after %s\n", checks[c], cmd2[0]);
			return 2;
		}
	}
	printf("%lld %lld %ld %lld\n", t_merge, t_unmerge, rss1 > rss2 ? rss1 : rss2, cpu);
	return 0;
}
