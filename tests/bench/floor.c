/* The floor for tests/bench/bench.sh: the bare syscalls of a sysext merge and unmerge,
 * nothing else (no discovery, no release-file parsing, no metadata layer, no staging).
 *
 *   floor merge   ROOT N   open ROOT/var/lib/extensions/eNNN/usr (NNN = 000..N-1) and ROOT/usr
 *                          with O_PATH; fsopen("overlay"); fsconfig source=sysext, then
 *                          lowerdir+=/proc/self/fd/K per layer (highest extension first, host
 *                          /usr last), FSCONFIG_CMD_CREATE; fsmount(RDONLY|NODEV);
 *                          move_mount onto ROOT/usr.
 *   floor unmerge ROOT     umount2(ROOT/usr, MNT_DETACH).
 *   floor loop    ROOT N K both of the above in this one process, K times; prints the
 *                          median and minimum ns per merge+unmerge (no process start).
 *
 * The bench times `floor merge` + `floor unmerge` through the same runner as the tools,
 * i.e. two process starts per merge+unmerge, as for extmerge and systemd-sysext.
 * Needs Linux 6.8+ (lowerdir+).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef FSOPEN_CLOEXEC
#define FSOPEN_CLOEXEC 0x00000001
#endif
#ifndef FSMOUNT_CLOEXEC
#define FSMOUNT_CLOEXEC 0x00000001
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#endif
#ifndef MOUNT_ATTR_NODEV
#define MOUNT_ATTR_NODEV 0x00000004
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef MOVE_MOUNT_T_EMPTY_PATH
#define MOVE_MOUNT_T_EMPTY_PATH 0x00000040
#endif
#ifndef FSCONFIG_SET_STRING
#define FSCONFIG_SET_STRING 1
#endif
#ifndef FSCONFIG_CMD_CREATE
#define FSCONFIG_CMD_CREATE 6
#endif

static void die(const char *what) {
	fprintf(stderr, "floor: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int sys_fsopen(const char *fs, unsigned flags) { return syscall(SYS_fsopen, fs, flags); }
static int sys_fsconfig(int fd, unsigned cmd, const char *key, const void *val, int aux) {
	return syscall(SYS_fsconfig, fd, cmd, key, val, aux);
}
static int sys_fsmount(int fd, unsigned flags, unsigned attrs) {
	return syscall(SYS_fsmount, fd, flags, attrs);
}
static int sys_move_mount(int from, const char *fp, int to, const char *tp, unsigned flags) {
	return syscall(SYS_move_mount, from, fp, to, tp, flags);
}

static void do_merge(const char *root, int n) {
	char path[4096];
	int fds[1024];
	if (n < 1 || n > 1000) {
		errno = EINVAL;
		die("N");
	}
	for (int i = 0; i < n; i++) {
		snprintf(path, sizeof path, "%s/var/lib/extensions/e%03d/usr", root, i);
		fds[i] = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (fds[i] < 0)
			die(path);
	}
	snprintf(path, sizeof path, "%s/usr", root);
	int host = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (host < 0)
		die(path);
	int fs = sys_fsopen("overlay", FSOPEN_CLOEXEC);
	if (fs < 0)
		die("fsopen overlay");
	if (sys_fsconfig(fs, FSCONFIG_SET_STRING, "source", "sysext", 0) < 0)
		die("fsconfig source");
	for (int i = n - 1; i >= -1; i--) {
		snprintf(path, sizeof path, "/proc/self/fd/%d", i >= 0 ? fds[i] : host);
		if (sys_fsconfig(fs, FSCONFIG_SET_STRING, "lowerdir+", path, 0) < 0)
			die("fsconfig lowerdir+");
	}
	if (sys_fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		die("fsconfig create");
	int mnt = sys_fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV);
	if (mnt < 0)
		die("fsmount");
	if (sys_move_mount(mnt, "", host, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
		die("move_mount");
	for (int i = 0; i < n; i++)
		close(fds[i]);
	close(host);
	close(fs);
	close(mnt);
}

static void do_unmerge(const char *root) {
	char path[4096];
	snprintf(path, sizeof path, "%s/usr", root);
	if (umount2(path, MNT_DETACH) < 0)
		die("umount2");
}

static long long now_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp_ll(const void *a, const void *b) {
	long long x = *(const long long *)a, y = *(const long long *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
	if (argc == 4 && strcmp(argv[1], "merge") == 0) {
		do_merge(argv[2], atoi(argv[3]));
	} else if (argc == 3 && strcmp(argv[1], "unmerge") == 0) {
		do_unmerge(argv[2]);
	} else if (argc == 5 && strcmp(argv[1], "loop") == 0) {
		int k = atoi(argv[4]);
		if (k < 1)
			k = 1;
		long long *t = calloc(k, sizeof *t);
		for (int i = 0; i < k; i++) {
			long long t0 = now_ns();
			do_merge(argv[2], atoi(argv[3]));
			do_unmerge(argv[2]);
			t[i] = now_ns() - t0;
		}
		qsort(t, k, sizeof *t, cmp_ll);
		printf("%lld %lld\n", t[k / 2], t[0]);
	} else {
		fprintf(stderr, "usage: floor merge ROOT N | floor unmerge ROOT | floor loop ROOT N K\n");
		return 2;
	}
	return 0;
}
