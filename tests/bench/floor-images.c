/* The floor for tests/bench/bench-images.sh: the bare syscalls of a sysext merge and
 * unmerge of N bare erofs images, nothing else (no discovery, no release-file parsing,
 * no probing, no metadata layer, no staging tmpfs).
 *
 *   floor-images merge   ROOT N   per image ROOT/var/lib/extensions/eNNN.raw
 *                                 (NNN = 000..N-1): open it read-only;
 *                                 LOOP_CTL_GET_FREE; open /dev/loopK read-only;
 *                                 LOOP_CONFIGURE (read-only, autoclear, direct I/O:
 *                                 the flags extmerge uses); fsopen("erofs"),
 *                                 source=/dev/loopK, ro, FSCONFIG_CMD_CREATE,
 *                                 fsmount(RDONLY|NODEV|NOSUID) (a detached mount);
 *                                 open its usr/ with O_PATH; close the loop and file
 *                                 fds (the mount holds the device now). Then
 *                                 fsopen("overlay"), lowerdir+=/proc/self/fd/K per
 *                                 image (highest first, host ROOT/usr last),
 *                                 fsmount, move_mount onto ROOT/usr.
 *   floor-images unmerge ROOT     umount2(ROOT/usr, MNT_DETACH); the overlay's private
 *                                 clones of the erofs mounts go with it, then the
 *                                 super blocks, then (autoclear) the loop devices.
 *   floor-images loop    ROOT N K both in this one process, K times, 20 ms apart (untimed);
 *                                 prints the median and minimum ns per merge+unmerge (no
 *                                 process start).
 *
 * Overlay layers on detached mounts need a kernel that allows them (6.15+; Linux 6.1
 * refuses them, which is why extmerge attaches its image mounts below a staging tmpfs);
 * lowerdir+ needs 6.8+. This is a host-only floor.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
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
#ifndef MOUNT_ATTR_NOSUID
#define MOUNT_ATTR_NOSUID 0x00000002
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
#ifndef FSCONFIG_SET_FLAG
#define FSCONFIG_SET_FLAG 0
#endif
#ifndef FSCONFIG_SET_STRING
#define FSCONFIG_SET_STRING 1
#endif
#ifndef FSCONFIG_CMD_CREATE
#define FSCONFIG_CMD_CREATE 6
#endif
#ifndef LOOP_CONFIGURE
#define LOOP_CONFIGURE 0x4C0A
#endif

static void die(const char *what) {
	fprintf(stderr, "floor-images: %s: %s\n", what, strerror(errno));
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

/* Binds `file` to a free loop device (read-only, autoclear, direct I/O if the backing
 * file system allows it); returns the open device fd and its path in `dev`. */
static int loop_attach(int ctl, int file, char *dev, size_t devlen) {
	static int direct_io = 1;
	for (int tries = 0; tries < 64; tries++) {
		int nr = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (nr < 0)
			die("LOOP_CTL_GET_FREE");
		snprintf(dev, devlen, "/dev/loop%d", nr);
		int fd = open(dev, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			die(dev);
		struct loop_config cfg;
		memset(&cfg, 0, sizeof cfg);
		cfg.fd = file;
		for (;;) {
			cfg.info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR |
					    (direct_io ? LO_FLAGS_DIRECT_IO : 0);
			if (ioctl(fd, LOOP_CONFIGURE, &cfg) == 0)
				return fd;
			if (errno == EINVAL && direct_io) {
				direct_io = 0;
				continue;
			}
			if (errno == EAGAIN)
				continue;
			break;
		}
		if (errno != EBUSY)
			die("LOOP_CONFIGURE");
		close(fd);
	}
	errno = EBUSY;
	die("LOOP_CONFIGURE");
	return -1;
}

/* Mounts the erofs file system on `dev`, detached; returns the mount fd. */
static int mount_erofs(const char *dev) {
	int fs = sys_fsopen("erofs", FSOPEN_CLOEXEC);
	if (fs < 0)
		die("fsopen erofs");
	if (sys_fsconfig(fs, FSCONFIG_SET_STRING, "source", dev, 0) < 0)
		die("fsconfig source");
	if (sys_fsconfig(fs, FSCONFIG_SET_FLAG, "ro", NULL, 0) < 0)
		die("fsconfig ro");
	if (sys_fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		die("fsconfig create erofs");
	int mnt = sys_fsmount(fs, FSMOUNT_CLOEXEC,
			      MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID);
	if (mnt < 0)
		die("fsmount erofs");
	close(fs);
	return mnt;
}

static void do_merge(const char *root, int n) {
	char path[4096], dev[64];
	int mnts[1024], usrs[1024];
	if (n < 1 || n > 1000) {
		errno = EINVAL;
		die("N");
	}
	int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		die("/dev/loop-control");
	for (int i = 0; i < n; i++) {
		snprintf(path, sizeof path, "%s/var/lib/extensions/e%03d.raw", root, i);
		int file = open(path, O_RDONLY | O_CLOEXEC);
		if (file < 0)
			die(path);
		int lo = loop_attach(ctl, file, dev, sizeof dev);
		mnts[i] = mount_erofs(dev);
		close(lo);
		close(file);
		usrs[i] = openat(mnts[i], "usr", O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (usrs[i] < 0)
			die("usr/ of the image");
	}
	close(ctl);
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
		snprintf(path, sizeof path, "/proc/self/fd/%d", i >= 0 ? usrs[i] : host);
		if (sys_fsconfig(fs, FSCONFIG_SET_STRING, "lowerdir+", path, 0) < 0)
			die("fsconfig lowerdir+");
	}
	if (sys_fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		die("fsconfig create overlay");
	int mnt = sys_fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV);
	if (mnt < 0)
		die("fsmount overlay");
	if (sys_move_mount(mnt, "", host, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
		die("move_mount");
	for (int i = 0; i < n; i++) {
		close(usrs[i]);
		close(mnts[i]);
	}
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
			/* Untimed pause: the kernel finishes tearing down the previous round's
			 * super blocks and loop devices in the background (RCU, work queues);
			 * back to back, the next round would pay for that. */
			if (i > 0)
				usleep(20000);
			long long t0 = now_ns();
			do_merge(argv[2], atoi(argv[3]));
			do_unmerge(argv[2]);
			t[i] = now_ns() - t0;
		}
		qsort(t, k, sizeof *t, cmp_ll);
		printf("%lld %lld\n", t[k / 2], t[0]);
	} else {
		fprintf(stderr, "usage: floor-images merge ROOT N | floor-images unmerge ROOT | "
				"floor-images loop ROOT N K\n");
		return 2;
	}
	return 0;
}
