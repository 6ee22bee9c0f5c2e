/* Timing helper for tests/bench/bench.sh.
 *
 *   runner [-e PATH]... [-L SUBSTR:COUNT] [-D COUNT] CMD1 [ARGS...] ::: CMD2 [ARGS...]
 *
 * Runs CMD1 (the merge), checks that every PATH exists, runs CMD2 (the unmerge), checks
 * that no PATH exists any more.
 *
 * Block devices (disk-image benchmarks): with -L, after the merge exactly COUNT bound loop
 * devices must have a /sys/block/loopN/loop/backing_file containing SUBSTR; with -D,
 * exactly COUNT device-mapper devices (/sys/block/dm-*) must exist. After the unmerge
 * the runner polls (every 0.2 ms, at most 5 s) until none of them is left, and adds a
 * fifth field to its output: <settle_ns>, the time from the unmerge's exit until the
 * last of them was gone (0 when they were gone at the first look). Loop devices with
 * autoclear and dm devices marked for deferred removal go away after their last user,
 * partly from kernel work queues, so the unmerge process may exit before they do. Each command is started with fork + execv (absolute path,
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
#include <dirent.h>
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

/* Number of bound loop devices whose backing file contains `sub`. */
static int count_loops(const char *sub) {
	DIR *d = opendir("/sys/block");
	struct dirent *e;
	int n = 0;
	if (!d) {
		perror("/sys/block");
		exit(2);
	}
	while ((e = readdir(d))) {
		char path[512], buf[4096];
		if (strncmp(e->d_name, "loop", 4) != 0)
			continue;
		snprintf(path, sizeof path, "/sys/block/%s/loop/backing_file", e->d_name);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue; /* not bound */
		ssize_t k = read(fd, buf, sizeof buf - 1);
		close(fd);
		if (k <= 0)
			continue;
		buf[k] = 0;
		if (strstr(buf, sub))
			n++;
	}
	closedir(d);
	return n;
}

/* Number of device-mapper devices. */
static int count_dms(void) {
	DIR *d = opendir("/sys/block");
	struct dirent *e;
	int n = 0;
	if (!d) {
		perror("/sys/block");
		exit(2);
	}
	while ((e = readdir(d)))
		if (strncmp(e->d_name, "dm-", 3) == 0)
			n++;
	closedir(d);
	return n;
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
	char *loop_sub = NULL;
	int loop_count = -1, dm_count = -1;
	while (i + 1 < argc && argv[i][0] == '-' && strlen(argv[i]) == 2) {
		if (argv[i][1] == 'e') {
			if (nchecks == 16) {
				fprintf(stderr, "runner: too many -e\n");
				return 2;
			}
			checks[nchecks++] = argv[i + 1];
		} else if (argv[i][1] == 'L') {
			loop_sub = argv[i + 1];
			char *colon = strrchr(loop_sub, ':');
			if (!colon) {
				fprintf(stderr, "runner: -L wants SUBSTR:COUNT\n");
				return 2;
			}
			*colon = 0;
			loop_count = atoi(colon + 1);
		} else if (argv[i][1] == 'D') {
			dm_count = atoi(argv[i + 1]);
		} else {
			break;
		}
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
		fprintf(stderr, "usage: runner [-e PATH]... [-L SUBSTR:COUNT] [-D COUNT] CMD1 [ARGS...] ::: CMD2 [ARGS...]\n");
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
	if (loop_sub && count_loops(loop_sub) != loop_count) {
		fprintf(stderr, "runner: %d loop devices on '%s' after %s, expected %d\n",
			count_loops(loop_sub), loop_sub, cmd1[0], loop_count);
		return 2;
	}
	if (dm_count >= 0 && count_dms() != dm_count) {
		fprintf(stderr, "runner: %d dm devices after %s, expected %d\n", count_dms(),
			cmd1[0], dm_count);
		return 2;
	}
	long long t_unmerge = run(cmd2, &rss2, &cpu);
	long long settle = -1;
	if (loop_sub || dm_count >= 0) {
		long long t0 = now_ns();
		for (;;) {
			int l = loop_sub ? count_loops(loop_sub) : 0;
			int d = dm_count >= 0 ? count_dms() : 0;
			long long t = now_ns() - t0;
			if (l == 0 && d == 0) {
				settle = settle < 0 ? 0 : t;
				break;
			}
			if (t > 5000000000LL) {
				fprintf(stderr, "runner: %d loop and %d dm devices still there 5 s after %s\n",
					l, d, cmd2[0]);
				return 2;
			}
			settle = t;
			usleep(200);
		}
	}
	for (int c = 0; c < nchecks; c++) {
		if (access(checks[c], F_OK) == 0) {
			fprintf(stderr, "runner: %s: still there after %s\n", checks[c], cmd2[0]);
			return 2;
		}
	}
	if (settle >= 0)
		printf("%lld %lld %ld %lld %lld\n", t_merge, t_unmerge, rss1 > rss2 ? rss1 : rss2, cpu,
		       settle);
	else
		printf("%lld %lld %ld %lld\n", t_merge, t_unmerge, rss1 > rss2 ? rss1 : rss2, cpu);
	return 0;
}
