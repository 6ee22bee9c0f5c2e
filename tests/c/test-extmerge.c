/* SPDX-License-Identifier: MIT */
/*
 * Tests of libextmerge through its C header, as a C program sees it: the context and
 * its setters, every error path, listing and status over a fixture root built here,
 * the log callback, and (as root, in a private mount namespace of a child process)
 * merge, refresh and unmerge.
 *
 * Output: TAP-like "ok N - ..." / "not ok N - ..." lines and a closing
 * "N passed, M failed[, K skipped]". Exit status 1 if anything failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include <extmerge.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

static int n_tests, n_passed, n_failed, n_skipped;

/* Test names given on the command line: only those run (all when none is given). */
static char **only;
static int n_only;

static int wanted(const char *name) {
        int i;

        if (n_only == 0)
                return 1;
        for (i = 0; i < n_only; i++)
                if (strcmp(only[i], name) == 0)
                        return 1;
        return 0;
}

/* libextmerge opens everything inside a root with openat2(RESOLVE_IN_ROOT) (Linux 5.6).
 * valgrind 3.19 (Debian 12) does not implement that syscall and fails it with ENOSYS;
 * the tests that read a root are skipped there, with a reason. */
static int have_openat2;

static int probe_openat2(void) {
        struct {
                uint64_t flags, mode, resolve;
        } how = { O_PATH | O_CLOEXEC, 0, 0 };
        long fd = syscall(SYS_openat2, AT_FDCWD, "/", &how, sizeof how);

        if (fd < 0)
                return 0;
        close((int)fd);
        return 1;
}

static void check(int cond, int line, const char *fmt, ...) {
        va_list ap;

        n_tests++;
        if (cond) {
                n_passed++;
                printf("ok %d - ", n_tests);
        } else {
                n_failed++;
                printf("not ok %d - ", n_tests);
        }
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        if (!cond)
                printf("  # at line %d", line);
        putchar('\n');
        fflush(stdout);
}

#define CHECK(cond, ...) check(!!(cond), __LINE__, __VA_ARGS__)

static void skip(const char *what, const char *why) {
        n_tests++;
        n_skipped++;
        printf("ok %d - %s # SKIP %s\n", n_tests, what, why);
        fflush(stdout);
}

static int contains(const char *haystack, const char *needle) {
        return haystack && needle && strstr(haystack, needle) != NULL;
}

/* A message as C callers get it: strerror's words once, no Rust " (os error N)". */
static int clean_errno_text(const char *msg) {
        return msg && !contains(msg, "(os error");
}

static int ends_with(const char *s, const char *suffix) {
        size_t a, b;

        if (!s || !suffix)
                return 0;
        a = strlen(s);
        b = strlen(suffix);
        return a >= b && strcmp(s + a - b, suffix) == 0;
}

static const char *str_or(const char *s) {
        return s ? s : "(null)";
}

/* ---- fixture ---------------------------------------------------------------- */

static char tmpdir[PATH_MAX];
static char root[PATH_MAX];
static char no_os_release_root[PATH_MAX];

static void die(const char *what) {
        fprintf(stderr, "fatal: %s: %s\n", what, strerror(errno));
        exit(2);
}

static void mkdir_p(const char *path) {
        char buf[PATH_MAX];
        char *p;

        if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
                die("path too long");
        for (p = buf + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = '\0';
                if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                        die(buf);
                *p = '/';
        }
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                die(buf);
}

/* Writes content to root + rel, creating parent directories. */
static void put_file(const char *base, const char *rel, const char *content) {
        char path[PATH_MAX];
        char *slash;
        FILE *f;

        if (snprintf(path, sizeof path, "%s%s", base, rel) >= (int)sizeof path)
                die("path too long");
        slash = strrchr(path, '/');
        *slash = '\0';
        mkdir_p(path);
        *slash = '/';
        f = fopen(path, "we");
        if (!f)
                die(path);
        if (fputs(content, f) == EOF || fclose(f) == EOF)
                die(path);
}

static void in_root(char *buf, size_t size, const char *rel) {
        if (snprintf(buf, size, "%s%s", root, rel) >= (int)size)
                die("path too long");
}

static int exists_in_root(const char *rel) {
        char p[PATH_MAX];

        in_root(p, sizeof p, rel);
        return access(p, F_OK) == 0;
}

static void make_fixture(void) {
        const char *t = getenv("TMPDIR");

        if (snprintf(tmpdir, sizeof tmpdir, "%s/extmerge-c-test.XXXXXX", t ? t : "/tmp") >=
            (int)sizeof tmpdir)
                die("TMPDIR too long");
        if (!mkdtemp(tmpdir))
                die("mkdtemp");
        if (snprintf(root, sizeof root, "%s/root", tmpdir) >= (int)sizeof root ||
            snprintf(no_os_release_root, sizeof no_os_release_root, "%s/bare", tmpdir) >=
                    (int)sizeof no_os_release_root)
                die("TMPDIR too long");
        mkdir_p(no_os_release_root);

        put_file(root, "/etc/os-release", "ID=testos\nVERSION_ID=1\n");
        put_file(root, "/usr/share/host.txt", "host\n");
        /* A compatible and an incompatible system extension. */
        put_file(root, "/var/lib/extensions/good/usr/lib/extension-release.d/extension-release.good",
                 "ID=testos\nVERSION_ID=1\n");
        put_file(root, "/var/lib/extensions/good/usr/share/good.txt", "good\n");
        put_file(root, "/var/lib/extensions/bad/usr/lib/extension-release.d/extension-release.bad",
                 "ID=otheros\nVERSION_ID=1\n");
        put_file(root, "/var/lib/extensions/bad/usr/share/bad.txt", "bad\n");
        /* Not an extension: discovery skips it and says so at LOG_INFO. */
        put_file(root, "/var/lib/extensions/README", "not an extension\n");
        /* A configuration extension. */
        put_file(root, "/run/confexts/conf1/etc/extension-release.d/extension-release.conf1",
                 "ID=testos\nVERSION_ID=1\n");
        put_file(root, "/run/confexts/conf1/etc/conf1.conf", "conf1\n");
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        (void)st;
        (void)type;
        (void)ftw;
        remove(path);
        return 0;
}

static void remove_fixture(void) {
        nftw(tmpdir, rm_entry, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

/* ---- log capture ------------------------------------------------------------ */

struct capture {
        int count;
        int max_priority; /* least important priority seen */
        int saw_skip_info;
        int saw_error;
        char last[1024];
};

static void capture_log(void *userdata, int priority, const char *message) {
        struct capture *c = userdata;

        c->count++;
        if (priority > c->max_priority)
                c->max_priority = priority;
        if (priority == LOG_INFO && contains(message, "README"))
                c->saw_skip_info = 1;
        if (priority == LOG_ERR)
                c->saw_error = 1;
        snprintf(c->last, sizeof c->last, "%s", message);
}

static void capture_reset(struct capture *c) {
        memset(c, 0, sizeof *c);
        c->max_priority = -1;
}

/* A context on the fixture root whose messages go to cap. */
static struct extmerge_context *fixture_ctx(struct capture *cap) {
        struct extmerge_context *ctx = NULL;

        if (extmerge_context_new(&ctx) < 0 || !ctx)
                die("extmerge_context_new");
        if (extmerge_context_set_root(ctx, root) < 0)
                die("extmerge_context_set_root");
        if (extmerge_context_set_log_fn(ctx, capture_log, cap) < 0)
                die("extmerge_context_set_log_fn");
        return ctx;
}

/* ---- tests ------------------------------------------------------------------ */

static void test_context(void) {
        struct extmerge_context *ctx = NULL;
        const char *v = extmerge_version();

        CHECK(v && *v, "extmerge_version() is \"%s\"", str_or(v));
        CHECK(extmerge_context_new(NULL) == -EINVAL, "context_new(NULL) is -EINVAL");
        CHECK(extmerge_context_new(&ctx) == 0 && ctx, "context_new succeeds");
        CHECK(extmerge_context_last_error(ctx) == NULL, "a new context has no last error");
        CHECK(extmerge_context_get_log_priority(ctx) == LOG_ERR, "default log priority is LOG_ERR");
        CHECK(extmerge_context_get_image_policy(ctx) == NULL, "no image policy by default");
        extmerge_context_free(ctx);
        extmerge_context_free(NULL);
        CHECK(1, "context_free(ctx) and context_free(NULL) return");

        CHECK(strcmp(str_or(extmerge_class_to_string(EXTMERGE_CLASS_SYSEXT)), "sysext") == 0 &&
                      strcmp(str_or(extmerge_class_to_string(EXTMERGE_CLASS_CONFEXT)), "confext") == 0 &&
                      strcmp(str_or(extmerge_class_to_string(EXTMERGE_CLASS_BOTH)), "both") == 0 &&
                      extmerge_class_to_string(42) == NULL,
              "class_to_string");
        CHECK(EXTMERGE_ERROR_PANIC == -(1 << 20) && EXTMERGE_ERROR_PANIC < -4095,
              "EXTMERGE_ERROR_PANIC (%d) is far outside the -errno range", EXTMERGE_ERROR_PANIC);
        CHECK(strcmp(str_or(extmerge_kind_to_string(EXTMERGE_KIND_DIRECTORY)), "directory") == 0 &&
                      extmerge_kind_to_string(0) == NULL,
              "kind_to_string");
}

static void test_env_log_priority(void) {
        static const struct {
                const char *value;
                int priority;
        } cases[] = {
                { "debug", LOG_DEBUG }, { "info", LOG_INFO }, { "7", LOG_DEBUG },
                { "warning", LOG_WARNING }, { "bogus", LOG_ERR }, { "9", LOG_ERR },
        };
        size_t i;

        for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                struct extmerge_context *ctx = NULL;
                int r;

                setenv("EXTMERGE_LOG", cases[i].value, 1);
                r = extmerge_context_new(&ctx);
                CHECK(r == 0 && extmerge_context_get_log_priority(ctx) == cases[i].priority,
                      "EXTMERGE_LOG=%s gives priority %d", cases[i].value, cases[i].priority);
                extmerge_context_free(ctx);
        }
        unsetenv("EXTMERGE_LOG");
}

static void test_errors(void) {
        struct extmerge_context *ctx = NULL;
        struct extmerge_list *list = (struct extmerge_list *)&list; /* must stay untouched */
        struct extmerge_list *const sentinel = list;
        struct extmerge_status_list *status = NULL;
        struct capture cap;
        char file_root[PATH_MAX];
        const char *err;
        int r;

        capture_reset(&cap);
        ctx = fixture_ctx(&cap);

        /* NULL context everywhere. */
        CHECK(extmerge_context_set_root(NULL, "/") == -EINVAL, "set_root(NULL ctx) is -EINVAL");
        CHECK(extmerge_context_set_sysroot(NULL, "/") == -EINVAL, "set_sysroot(NULL ctx) is -EINVAL");
        CHECK(extmerge_context_set_class(NULL, EXTMERGE_CLASS_SYSEXT) == -EINVAL,
              "set_class(NULL ctx) is -EINVAL");
        CHECK(extmerge_merge(NULL, 0) == -EINVAL && extmerge_unmerge(NULL, 0) == -EINVAL &&
                      extmerge_refresh(NULL, 0) == -EINVAL,
              "merge/unmerge/refresh(NULL ctx) are -EINVAL");
        CHECK(extmerge_list_new(NULL, &list) == -EINVAL && list == sentinel,
              "list_new(NULL ctx) is -EINVAL and leaves *ret alone");
        CHECK(extmerge_status_list_new(NULL, &status) == -EINVAL && status == NULL,
              "status_list_new(NULL ctx) is -EINVAL");
        CHECK(extmerge_context_set_mutable(NULL, "yes") == -EINVAL &&
                      extmerge_context_set_force(NULL, 1) == -EINVAL &&
                      extmerge_context_set_no_reload(NULL, 1) == -EINVAL &&
                      extmerge_context_set_noexec(NULL, 1) == -EINVAL &&
                      extmerge_context_set_always_refresh(NULL, 1) == -EINVAL &&
                      extmerge_context_set_image_policy(NULL, "*") == -EINVAL &&
                      extmerge_context_set_hierarchies(NULL, NULL, 0) == -EINVAL &&
                      extmerge_context_set_log_fn(NULL, NULL, NULL) == -EINVAL &&
                      extmerge_context_set_log_priority(NULL, LOG_INFO) == -EINVAL &&
                      extmerge_context_get_log_priority(NULL) == -EINVAL,
              "every setter with a NULL ctx is -EINVAL");
        CHECK(extmerge_context_last_error(NULL) == NULL && extmerge_context_get_image_policy(NULL) == NULL,
              "last_error(NULL) and get_image_policy(NULL) are NULL");

        /* Root. */
        r = extmerge_context_set_root(ctx, NULL);
        err = extmerge_context_last_error(ctx);
        CHECK(r == -EINVAL && contains(err, "root"), "set_root(NULL) is -EINVAL: %s", str_or(err));
        r = extmerge_context_set_root(ctx, "/tmp/\xff\xfe-not-utf8");
        err = extmerge_context_last_error(ctx);
        CHECK(r == -EINVAL && contains(err, "UTF-8"), "set_root(invalid UTF-8) is -EINVAL: %s", str_or(err));
        r = extmerge_context_set_root(ctx, "");
        CHECK(r == -EINVAL, "set_root(\"\") is -EINVAL");
        r = extmerge_context_set_root(ctx, "/nonexistent/extmerge-root");
        err = extmerge_context_last_error(ctx);
        CHECK(r == -ENOENT && contains(err, "/nonexistent/extmerge-root"),
              "set_root(missing dir) is -ENOENT naming the path: %s", str_or(err));
        CHECK(contains(err, strerror(ENOENT)) && clean_errno_text(err),
              "set_root(missing dir): the reason in strerror's words, no \"(os error\": %s", str_or(err));
        r = extmerge_context_set_sysroot(ctx, "/nonexistent/sysroot");
        err = extmerge_context_last_error(ctx);
        CHECK(r == -ENOENT && contains(err, "/nonexistent/sysroot"),
              "set_sysroot(missing dir) is -ENOENT naming the path: %s", str_or(err));
        in_root(file_root, sizeof file_root, "/etc/os-release");
        r = extmerge_context_set_root(ctx, file_root);
        err = extmerge_context_last_error(ctx);
        CHECK(r == -ENOTDIR && contains(err, file_root), "set_root(a file) is -ENOTDIR: %s", str_or(err));
        CHECK(contains(err, strerror(ENOTDIR)) && clean_errno_text(err) && clean_errno_text(cap.last),
              "set_root(a file): no \"(os error\" in the last error or the log: %s", str_or(err));
        CHECK(cap.saw_error && contains(cap.last, "extmerge_context_set_root"),
              "errors reach the log callback at LOG_ERR: %s", cap.last);

        /* A success clears the last error. */
        CHECK(extmerge_context_set_root(ctx, root) == 0 && extmerge_context_last_error(ctx) == NULL,
              "a successful call clears the last error");

        /* Class. */
        r = extmerge_context_set_class(ctx, 42);
        err = extmerge_context_last_error(ctx);
        CHECK(r == -EINVAL && contains(err, "42"), "set_class(42) is -EINVAL: %s", str_or(err));
        CHECK(extmerge_context_set_class(ctx, 0) == -EINVAL, "set_class(0) is -EINVAL");

        /* Flags. */
        r = extmerge_merge(ctx, 0x80);
        err = extmerge_context_last_error(ctx);
        CHECK(r == -EINVAL && contains(err, "unknown flags"), "merge(unknown flags) is -EINVAL: %s", str_or(err));
        CHECK(extmerge_unmerge(ctx, 1u << 31) == -EINVAL, "unmerge(unknown flags) is -EINVAL");
        CHECK(extmerge_refresh(ctx, EXTMERGE_FLAG_FORCE | 0x100) == -EINVAL,
              "refresh(known | unknown flags) is -EINVAL");

        /* Mutable mode. */
        r = extmerge_context_set_mutable(ctx, "sometimes");
        err = extmerge_context_last_error(ctx);
        CHECK(r == -EINVAL && contains(err, "sometimes"), "set_mutable(\"sometimes\") is -EINVAL: %s", str_or(err));
        CHECK(extmerge_context_set_mutable(ctx, "\xc3\x28") == -EINVAL, "set_mutable(invalid UTF-8) is -EINVAL");
        CHECK(extmerge_context_set_mutable(ctx, "ephemeral-import") == 0 &&
                      extmerge_context_set_mutable(ctx, "yes") == 0 &&
                      extmerge_context_set_mutable(ctx, "false") == 0 &&
                      extmerge_context_set_mutable(ctx, NULL) == 0,
              "set_mutable accepts systemd's names, booleans and NULL");

        /* Log priority. */
        CHECK(extmerge_context_set_log_priority(ctx, 8) == -EINVAL &&
                      extmerge_context_set_log_priority(ctx, -1) == -EINVAL,
              "set_log_priority outside 0-7 is -EINVAL");

        /* Hierarchies. */
        {
                const char *bad[] = { "/usr", "usr" };
                const char *dotdot[] = { "/usr/../etc" };
                const char *nul[] = { NULL };
                const char *good[] = { "/usr", "/opt" };

                r = extmerge_context_set_hierarchies(ctx, bad, 2);
                err = extmerge_context_last_error(ctx);
                CHECK(r == -EINVAL && contains(err, "\"usr\""), "set_hierarchies(relative) is -EINVAL: %s",
                      str_or(err));
                CHECK(extmerge_context_set_hierarchies(ctx, dotdot, 1) == -EINVAL,
                      "set_hierarchies(\"/usr/../etc\") is -EINVAL");
                CHECK(extmerge_context_set_hierarchies(ctx, nul, 1) == -EINVAL,
                      "set_hierarchies with a NULL element is -EINVAL");
                CHECK(extmerge_context_set_hierarchies(ctx, NULL, 3) == -EINVAL,
                      "set_hierarchies(NULL, 3) is -EINVAL");
                CHECK(extmerge_context_set_hierarchies(ctx, good, 2) == 0 &&
                              extmerge_context_set_hierarchies(ctx, NULL, 0) == 0,
                      "set_hierarchies accepts a list and NULL/0 (default)");
        }

        /* Image policy: stored, copied, returned. */
        {
                char policy[] = "root=verity:usr=verity+signed";

                CHECK(extmerge_context_set_image_policy(ctx, policy) == 0, "set_image_policy succeeds");
                policy[0] = 'X';
                CHECK(strcmp(str_or(extmerge_context_get_image_policy(ctx)), "root=verity:usr=verity+signed") ==
                              0,
                      "get_image_policy returns a copy of the policy");
                CHECK(extmerge_context_set_image_policy(ctx, "\xff") == -EINVAL,
                      "set_image_policy(invalid UTF-8) is -EINVAL");
                CHECK(extmerge_context_set_image_policy(ctx, NULL) == 0 &&
                              extmerge_context_get_image_policy(ctx) == NULL,
                      "set_image_policy(NULL) clears it");
        }

        CHECK(extmerge_context_set_force(ctx, 0) == 0 && extmerge_context_set_no_reload(ctx, 1) == 0 &&
                      extmerge_context_set_noexec(ctx, -1) == 0 && extmerge_context_set_noexec(ctx, 1) == 0 &&
                      extmerge_context_set_always_refresh(ctx, 0) == 0,
              "boolean setters succeed");

        /* Output parameters. */
        r = extmerge_list_new(ctx, NULL);
        CHECK(r == -EINVAL && extmerge_context_last_error(ctx), "list_new(ret NULL) is -EINVAL");
        CHECK(extmerge_status_list_new(ctx, NULL) == -EINVAL, "status_list_new(ret NULL) is -EINVAL");

        /* NULL lists and entries. */
        CHECK(extmerge_list_next(NULL) == NULL && extmerge_status_list_next(NULL) == NULL,
              "list_next(NULL) is NULL");
        extmerge_list_free(NULL);
        extmerge_status_list_free(NULL);
        CHECK(extmerge_entry_get_name(NULL) == NULL && extmerge_entry_get_path(NULL) == NULL &&
                      extmerge_entry_get_reason(NULL) == NULL && extmerge_entry_get_class(NULL) == -EINVAL &&
                      extmerge_entry_get_kind(NULL) == -EINVAL && extmerge_entry_get_verdict(NULL) == -EINVAL &&
                      extmerge_entry_get_mtime_usec(NULL) == 0,
              "entry getters on NULL");
        CHECK(extmerge_status_entry_get_hierarchy(NULL) == NULL &&
                      extmerge_status_entry_get_extensions(NULL) == NULL &&
                      extmerge_status_entry_get_class(NULL) == -EINVAL &&
                      extmerge_status_entry_is_merged(NULL) == -EINVAL &&
                      extmerge_status_entry_get_since_usec(NULL) == 0,
              "status entry getters on NULL");

        /* A root without os-release: listing fails and says where. */
        CHECK(extmerge_context_set_root(ctx, no_os_release_root) == 0, "set_root(bare dir) succeeds");
        list = sentinel;
        r = extmerge_list_new(ctx, &list);
        err = extmerge_context_last_error(ctx);
        if (have_openat2)
                CHECK(r == -ENOENT && contains(err, no_os_release_root) && contains(err, "os-release") &&
                              clean_errno_text(err) && list == sentinel,
                      "list_new without os-release is -ENOENT naming the root: %s", str_or(err));
        else
                CHECK(r < 0 && err && list == sentinel, "list_new fails without openat2: %s", str_or(err));

        extmerge_context_free(ctx);
}

struct expect {
        const char *name;
        int class;
        int verdict;
        const char *path_suffix;
};

static void check_list(struct extmerge_context *ctx, const char *title, const struct expect *want, size_t n_want) {
        struct extmerge_list *list = NULL;
        const struct extmerge_entry *e;
        size_t i = 0;
        int r;

        r = extmerge_list_new(ctx, &list);
        CHECK(r == 0 && list, "%s: list_new succeeds (%s)", title, str_or(extmerge_context_last_error(ctx)));
        if (r < 0)
                return;
        while ((e = extmerge_list_next(list))) {
                const char *name = extmerge_entry_get_name(e);
                const char *path = extmerge_entry_get_path(e);
                const char *reason = extmerge_entry_get_reason(e);
                int verdict = extmerge_entry_get_verdict(e);

                if (i >= n_want) {
                        CHECK(0, "%s: unexpected entry %s", title, str_or(name));
                        i++;
                        continue;
                }
                CHECK(strcmp(str_or(name), want[i].name) == 0, "%s: entry %zu is %s (got %s)", title, i,
                      want[i].name, str_or(name));
                CHECK(extmerge_entry_get_class(e) == want[i].class, "%s: %s has class %s", title,
                      want[i].name, str_or(extmerge_class_to_string(want[i].class)));
                CHECK(extmerge_entry_get_kind(e) == EXTMERGE_KIND_DIRECTORY, "%s: %s is a directory", title,
                      want[i].name);
                CHECK(verdict == want[i].verdict, "%s: %s verdict is %s", title, want[i].name,
                      want[i].verdict == EXTMERGE_VERDICT_MATCH ? "MATCH" : "SKIP");
                CHECK(path && strncmp(path, root, strlen(root)) == 0 && ends_with(path, want[i].path_suffix),
                      "%s: %s path is %s", title, want[i].name, str_or(path));
                CHECK(extmerge_entry_get_mtime_usec(e) > 0, "%s: %s has an mtime", title, want[i].name);
                if (want[i].verdict == EXTMERGE_VERDICT_MATCH)
                        CHECK(reason == NULL, "%s: %s has no skip reason", title, want[i].name);
                else
                        CHECK(contains(reason, "ID=otheros") && contains(reason, "testos"),
                              "%s: %s skip reason names the mismatch: %s", title, want[i].name, str_or(reason));
                i++;
        }
        CHECK(i == n_want, "%s: %zu entries (want %zu)", title, i, n_want);
        CHECK(extmerge_list_next(list) == NULL, "%s: list_next stays NULL at the end", title);
        extmerge_list_free(list);
}

static void test_list(void) {
        static const struct expect both[] = {
                { "conf1", EXTMERGE_CLASS_CONFEXT, EXTMERGE_VERDICT_MATCH, "/run/confexts/conf1" },
                { "bad", EXTMERGE_CLASS_SYSEXT, EXTMERGE_VERDICT_SKIP, "/var/lib/extensions/bad" },
                { "good", EXTMERGE_CLASS_SYSEXT, EXTMERGE_VERDICT_MATCH, "/var/lib/extensions/good" },
        };
        static const struct expect forced[] = {
                { "bad", EXTMERGE_CLASS_SYSEXT, EXTMERGE_VERDICT_MATCH, "/var/lib/extensions/bad" },
                { "good", EXTMERGE_CLASS_SYSEXT, EXTMERGE_VERDICT_MATCH, "/var/lib/extensions/good" },
        };
        struct extmerge_context *ctx;
        struct extmerge_list *list = NULL;
        const struct extmerge_entry *e;
        struct capture cap;

        capture_reset(&cap);
        ctx = fixture_ctx(&cap);
        check_list(ctx, "list both", both, 3);
        CHECK(extmerge_context_set_class(ctx, EXTMERGE_CLASS_SYSEXT) == 0, "set_class(SYSEXT)");
        check_list(ctx, "list sysext", both + 1, 2);
        CHECK(extmerge_context_set_class(ctx, EXTMERGE_CLASS_CONFEXT) == 0, "set_class(CONFEXT)");
        check_list(ctx, "list confext", both, 1);
        CHECK(extmerge_context_set_class(ctx, EXTMERGE_CLASS_SYSEXT) == 0 && extmerge_context_set_force(ctx, 1) == 0,
              "set_force(1)");
        check_list(ctx, "list sysext forced", forced, 2);

        /* The list outlives its context; its strings stay valid. */
        CHECK(extmerge_list_new(ctx, &list) == 0, "list_new for a list outliving ctx");
        extmerge_context_free(ctx);
        e = extmerge_list_next(list);
        CHECK(e && strcmp(str_or(extmerge_entry_get_name(e)), "bad") == 0,
              "entries stay valid after context_free");
        extmerge_list_free(list);
}

static void test_log(void) {
        struct extmerge_context *ctx;
        struct extmerge_list *list = NULL;
        struct capture cap;

        capture_reset(&cap);
        ctx = fixture_ctx(&cap);

        /* LOG_ERR (default): the skipped README is not reported. */
        CHECK(extmerge_list_new(ctx, &list) == 0, "list at LOG_ERR");
        extmerge_list_free(list);
        CHECK(cap.count == 0, "nothing logged at LOG_ERR for a successful list (%d messages)", cap.count);

        /* LOG_INFO: it is, and nothing less important than LOG_INFO arrives. */
        CHECK(extmerge_context_set_log_priority(ctx, LOG_INFO) == 0 &&
                      extmerge_context_get_log_priority(ctx) == LOG_INFO,
              "set_log_priority(LOG_INFO)");
        CHECK(extmerge_list_new(ctx, &list) == 0, "list at LOG_INFO");
        extmerge_list_free(list);
        CHECK(cap.saw_skip_info, "the skipped README is logged at LOG_INFO (last: %s)", cap.last);
        CHECK(cap.max_priority <= LOG_INFO, "no message above LOG_INFO (max %d)", cap.max_priority);

        /* An error arrives at LOG_ERR with the function's name. */
        capture_reset(&cap);
        CHECK(extmerge_context_set_log_priority(ctx, LOG_ERR) == 0, "set_log_priority(LOG_ERR)");
        CHECK(extmerge_context_set_class(ctx, 42) == -EINVAL, "a failing call");
        CHECK(cap.count == 1 && cap.saw_error && contains(cap.last, "extmerge_context_set_class") &&
                      contains(cap.last, "42"),
              "its error is logged at LOG_ERR: %s", cap.last);

        /* LOG_CRIT: even errors are dropped. */
        capture_reset(&cap);
        CHECK(extmerge_context_set_log_priority(ctx, LOG_CRIT) == 0, "set_log_priority(LOG_CRIT)");
        CHECK(extmerge_context_set_class(ctx, 42) == -EINVAL && cap.count == 0,
              "nothing is delivered below the priority");

        /* NULL log function: silence. */
        capture_reset(&cap);
        CHECK(extmerge_context_set_log_priority(ctx, LOG_DEBUG) == 0 &&
                      extmerge_context_set_log_fn(ctx, NULL, NULL) == 0,
              "set_log_fn(NULL) at LOG_DEBUG");
        CHECK(extmerge_list_new(ctx, &list) == 0, "list with logging off");
        extmerge_list_free(list);
        CHECK(cap.count == 0, "a NULL log function receives nothing");

        extmerge_context_free(ctx);
}

struct status_want {
        const char *hierarchy;
        int class;
        int merged;
        const char *extension; /* the only one, or NULL */
};

static void check_status(struct extmerge_context *ctx, const char *title, const struct status_want *want,
                         size_t n_want) {
        struct extmerge_status_list *st = NULL;
        const struct extmerge_status_entry *e;
        size_t i = 0;
        int r;

        r = extmerge_status_list_new(ctx, &st);
        CHECK(r == 0 && st, "%s: status_list_new succeeds (%s)", title,
              str_or(extmerge_context_last_error(ctx)));
        if (r < 0)
                return;
        while ((e = extmerge_status_list_next(st))) {
                const char *h = extmerge_status_entry_get_hierarchy(e);
                const char *const *exts = extmerge_status_entry_get_extensions(e);
                int merged = extmerge_status_entry_is_merged(e);

                if (i >= n_want) {
                        CHECK(0, "%s: unexpected status entry %s", title, str_or(h));
                        i++;
                        continue;
                }
                CHECK(strcmp(str_or(h), want[i].hierarchy) == 0 &&
                              extmerge_status_entry_get_class(e) == want[i].class,
                      "%s: entry %zu is %s %s (got %s)", title, i, want[i].hierarchy,
                      str_or(extmerge_class_to_string(want[i].class)), str_or(h));
                CHECK(merged == want[i].merged, "%s: %s is %smerged", title, want[i].hierarchy,
                      want[i].merged ? "" : "not ");
                if (want[i].extension)
                        CHECK(exts && exts[0] && strcmp(exts[0], want[i].extension) == 0 && !exts[1] &&
                                      extmerge_status_entry_get_since_usec(e) > 0,
                              "%s: %s carries %s", title, want[i].hierarchy, want[i].extension);
                else
                        CHECK(exts && !exts[0] && extmerge_status_entry_get_since_usec(e) == 0,
                              "%s: %s carries nothing", title, want[i].hierarchy);
                i++;
        }
        CHECK(i == n_want, "%s: %zu status entries (want %zu)", title, i, n_want);
        extmerge_status_list_free(st);
}

static void test_status_unmerged(void) {
        static const struct status_want want[] = {
                { "/etc", EXTMERGE_CLASS_CONFEXT, 0, NULL },
                { "/usr", EXTMERGE_CLASS_SYSEXT, 0, NULL },
        };
        struct capture cap;
        struct extmerge_context *ctx;

        capture_reset(&cap);
        ctx = fixture_ctx(&cap);
        /* /opt does not exist in the fixture: not listed. */
        check_status(ctx, "status (nothing merged)", want, 2);
        extmerge_context_free(ctx);
}

/* Runs in a child: private mount namespace, merge/refresh/unmerge on the fixture. */
static void merge_tests(void) {
        static const struct status_want merged[] = {
                { "/etc", EXTMERGE_CLASS_CONFEXT, 1, "conf1" },
                { "/usr", EXTMERGE_CLASS_SYSEXT, 1, "good" },
        };
        static const struct status_want unmerged[] = {
                { "/etc", EXTMERGE_CLASS_CONFEXT, 0, NULL },
                { "/usr", EXTMERGE_CLASS_SYSEXT, 0, NULL },
        };
        struct extmerge_context *ctx;
        struct capture cap;
        char p[PATH_MAX];
        const char *err;
        int r, fd;

        capture_reset(&cap);
        ctx = fixture_ctx(&cap);
        extmerge_context_set_log_priority(ctx, LOG_INFO);

        r = extmerge_merge(ctx, EXTMERGE_FLAG_NO_RELOAD);
        CHECK(r == 0, "merge (both classes) succeeds: %d %s", r, str_or(extmerge_context_last_error(ctx)));
        CHECK(contains(cap.last, "Merged extensions into"), "merge logs at LOG_INFO: %s", cap.last);
        CHECK(exists_in_root("/usr/share/good.txt"), "sysext file is visible after merge");
        CHECK(exists_in_root("/usr/share/host.txt"), "host /usr file is still visible");
        CHECK(!exists_in_root("/usr/share/bad.txt"), "the incompatible sysext is not merged");
        CHECK(exists_in_root("/etc/conf1.conf"), "confext file is visible after merge");
        CHECK(exists_in_root("/etc/os-release"), "host /etc file is still visible");
        in_root(p, sizeof p, "/usr/share/new-file");
        fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        CHECK(fd < 0 && errno == EROFS, "merged /usr is read-only");
        if (fd >= 0)
                close(fd);
        check_status(ctx, "status (merged)", merged, 2);

        r = extmerge_merge(ctx, 0);
        err = extmerge_context_last_error(ctx);
        CHECK(r == -EBUSY && contains(err, "already merged"), "merge again is -EBUSY: %s", str_or(err));
        CHECK(contains(err, "extmerge_refresh()") && !contains(err, "--"),
              "already merged: the hint names C functions, no CLI verb or option: %s", str_or(err));

        r = extmerge_refresh(ctx, 0);
        CHECK(r == 0, "refresh (nothing changed) succeeds: %s", str_or(extmerge_context_last_error(ctx)));
        CHECK(contains(cap.last, "no change was found") && contains(cap.last, "EXTMERGE_FLAG_ALWAYS_REFRESH") &&
                      !contains(cap.last, "--"),
              "refresh (nothing changed) logs the C flag, not a CLI option: %s", cap.last);
        r = extmerge_refresh(ctx, EXTMERGE_FLAG_ALWAYS_REFRESH);
        CHECK(r == 0 && exists_in_root("/usr/share/good.txt"), "refresh with ALWAYS_REFRESH succeeds: %s",
              str_or(extmerge_context_last_error(ctx)));

        r = extmerge_unmerge(ctx, 0);
        CHECK(r == 0, "unmerge succeeds: %s", str_or(extmerge_context_last_error(ctx)));
        CHECK(!exists_in_root("/usr/share/good.txt"), "sysext file is gone after unmerge");
        CHECK(!exists_in_root("/etc/conf1.conf"), "confext file is gone after unmerge");
        CHECK(exists_in_root("/usr/share/host.txt") && exists_in_root("/etc/os-release"),
              "host files are back");
        check_status(ctx, "status (unmerged)", unmerged, 2);

        CHECK(extmerge_unmerge(ctx, 0) == 0, "unmerge with nothing merged succeeds");
        extmerge_context_free(ctx);
}

/* base + rel into buf; dies if it does not fit. */
static void path_in(char *buf, size_t size, const char *base, const char *rel) {
        if (snprintf(buf, size, "%s%s", base, rel) >= (int)size)
                die("path too long");
}

/* Runs argv (argv[0] looked up in PATH): its exit status, 127 if it could not be run,
 * -1 if it did not exit normally. */
static int run_cmd(char *const argv[]) {
        pid_t pid;
        int status;

        fflush(stdout);
        pid = fork();
        if (pid < 0)
                return -1;
        if (pid == 0) {
                execvp(argv[0], argv);
                _exit(127);
        }
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status))
                return -1;
        return WEXITSTATUS(status);
}

/* Builds an erofs image at image from a tree holding extension-release.<name> with
 * release and usr/share/<name>. Returns mkfs.erofs' exit status (127: not found). */
static int make_erofs_sysext(const char *image, const char *name, const char *release) {
        char tree[PATH_MAX], rel[PATH_MAX];
        char *argv[] = { "mkfs.erofs", "--quiet", "-T0", "--all-root", NULL, NULL, NULL };

        if (snprintf(tree, sizeof tree, "%s/tree-%s", tmpdir, name) >= (int)sizeof tree)
                die("path too long");
        path_in(rel, sizeof rel, "/usr/lib/extension-release.d/extension-release.", name);
        put_file(tree, rel, release);
        path_in(rel, sizeof rel, "/usr/share/", name);
        put_file(tree, rel, "from the image\n");
        argv[4] = (char *)image;
        argv[5] = tree;
        return run_cmd(argv);
}

/* Does this namespace's mount table mention the string? */
static int mountinfo_mentions(const char *what) {
        char line[4096];
        int found = 0;
        FILE *f = fopen("/proc/self/mountinfo", "re");

        if (!f)
                return -1;
        while (!found && fgets(line, sizeof line, f))
                found = contains(line, what);
        fclose(f);
        return found;
}

/* Runs in the root child: disk images in the list get the verdicts `extmerge plan` gives
 * as root. A raw erofs image is judged by the extension-release inside it (match, or
 * skip with the mismatch), not "read when it is mounted"; a broken image is one entry
 * with EXTMERGE_VERDICT_UNUSABLE and the error naming the file; nothing stays mounted.
 * extmerge_merge() still fails on the broken image. */
static void image_list_tests(void) {
        static const struct {
                const char *name;
                int verdict;
                const char *reason; /* a part of it, or NULL for none */
        } want[] = {
                { "broken", EXTMERGE_VERDICT_UNUSABLE, "broken.raw: file system: " },
                { "img", EXTMERGE_VERDICT_MATCH, NULL },
                { "wrongid", EXTMERGE_VERDICT_SKIP, "ID=otheros does not match host ID=testos" },
        };
        char img_root[PATH_MAX], img[PATH_MAX], wrong[PATH_MAX], junk[4097], p[PATH_MAX];
        struct extmerge_context *ctx = NULL;
        struct extmerge_list *list = NULL;
        const struct extmerge_entry *e;
        const char *err;
        struct capture cap;
        size_t i = 0;
        int r;

        if (snprintf(img_root, sizeof img_root, "%s/imgroot", tmpdir) >= (int)sizeof img_root)
                die("path too long");
        put_file(img_root, "/etc/os-release", "ID=testos\nVERSION_ID=1\n");
        put_file(img_root, "/usr/share/host.txt", "host\n");
        path_in(p, sizeof p, img_root, "/var/lib/extensions");
        mkdir_p(p);
        path_in(img, sizeof img, img_root, "/var/lib/extensions/img.raw");
        path_in(wrong, sizeof wrong, img_root, "/var/lib/extensions/wrongid.raw");
        r = make_erofs_sysext(img, "img", "ID=testos\nVERSION_ID=1\n");
        if (r == 127) {
                skip("listing disk images", "needs mkfs.erofs");
                return;
        }
        CHECK(r == 0 && make_erofs_sysext(wrong, "wrongid", "ID=otheros\nVERSION_ID=1\n") == 0,
              "mkfs.erofs builds img.raw and wrongid.raw");
        memset(junk, 'x', sizeof junk - 1);
        junk[sizeof junk - 1] = '\0';
        put_file(img_root, "/var/lib/extensions/broken.raw", junk);

        capture_reset(&cap);
        if (extmerge_context_new(&ctx) < 0 || extmerge_context_set_root(ctx, img_root) < 0 ||
            extmerge_context_set_log_fn(ctx, capture_log, &cap) < 0 ||
            extmerge_context_set_class(ctx, EXTMERGE_CLASS_SYSEXT) < 0)
                die("image context");
        r = extmerge_list_new(ctx, &list);
        CHECK(r == 0 && list, "list with disk images succeeds: %s", str_or(extmerge_context_last_error(ctx)));
        while (list && (e = extmerge_list_next(list))) {
                const char *name = extmerge_entry_get_name(e);
                const char *reason = extmerge_entry_get_reason(e);

                if (i >= sizeof want / sizeof want[0]) {
                        CHECK(0, "images: unexpected entry %s", str_or(name));
                        i++;
                        continue;
                }
                CHECK(strcmp(str_or(name), want[i].name) == 0 && extmerge_entry_get_kind(e) == EXTMERGE_KIND_RAW,
                      "images: entry %zu is raw image %s (got %s)", i, want[i].name, str_or(name));
                CHECK(extmerge_entry_get_verdict(e) == want[i].verdict, "images: %s has verdict %d (got %d: %s)",
                      want[i].name, want[i].verdict, extmerge_entry_get_verdict(e), str_or(reason));
                if (want[i].verdict == EXTMERGE_VERDICT_UNUSABLE)
                        CHECK(contains(reason, want[i].reason) && contains(reason, img_root),
                              "images: %s reason names the file and the error: %s", want[i].name,
                              str_or(reason));
                else if (want[i].reason)
                        CHECK(contains(reason, want[i].reason),
                              "images: %s reason is the mismatch read inside the image: %s", want[i].name,
                              str_or(reason));
                else
                        CHECK(reason == NULL, "images: %s has no reason (got %s)", want[i].name, str_or(reason));
                CHECK(!contains(reason, "read when it is mounted"), "images: %s was opened, not deferred",
                      want[i].name);
                i++;
        }
        CHECK(i == sizeof want / sizeof want[0], "images: %zu entries (want %zu)", i,
              sizeof want / sizeof want[0]);
        extmerge_list_free(list);
        CHECK(mountinfo_mentions("/run/extmerge") == 0 && mountinfo_mentions(img_root) == 0,
              "listing leaves nothing mounted");

        /* merge stays all or nothing: it fails on the broken image and mounts nothing. */
        r = extmerge_merge(ctx, EXTMERGE_FLAG_NO_RELOAD);
        err = extmerge_context_last_error(ctx);
        CHECK(r < 0 && contains(err, "broken.raw"), "merge fails on the broken image: %d %s", r, str_or(err));
        CHECK(clean_errno_text(err), "broken image: no \"(os error\" in the last error: %s", str_or(err));
        path_in(p, sizeof p, img_root, "/usr/share/img");
        CHECK(access(p, F_OK) < 0 && mountinfo_mentions(img_root) == 0, "the failed merge mounted nothing");
        extmerge_context_free(ctx);
}

/* Is something mounted exactly at path in this namespace (field 5 of mountinfo)? Paths
 * with spaces, tabs, newlines or backslashes are escaped there: the fixtures have none. */
static int mounted_at(const char *path) {
        char line[4096];
        int found = 0;
        FILE *f = fopen("/proc/self/mountinfo", "re");

        if (!f)
                return -1;
        while (!found && fgets(line, sizeof line, f)) {
                char *p = line, *end;
                int i;

                for (i = 0; i < 4 && p; i++) {
                        p = strchr(p, ' ');
                        if (p)
                                p++;
                }
                if (!p)
                        continue;
                end = strchr(p, ' ');
                if (end)
                        *end = '\0';
                found = strcmp(p, path) == 0;
        }
        fclose(f);
        return found;
}

/* Runs in the root child: with EXTMERGE_CLASS_BOTH a merge is all or nothing. The root
 * has a valid confext (merged first) and a sysext part that fails: a broken disk image
 * in /var/lib/extensions (as image_list_tests shows, a sysext merge fails on it, after
 * the confext was merged). extmerge_merge() must fail and leave nothing merged: no
 * overlay on <root>/etc, the confext's file not visible. (The library of commit 2f88abd
 * fails this: it merged class by class and left the confext merged.) */
static void test_class_both_all_or_nothing(void) {
        const char *title = "test_class_both_all_or_nothing";
        char both_root[PATH_MAX], p[PATH_MAX], junk[4097];
        struct extmerge_context *ctx = NULL;
        struct capture cap;
        const char *err;
        int r;

        if (snprintf(both_root, sizeof both_root, "%s/bothroot", tmpdir) >= (int)sizeof both_root)
                die("path too long");
        put_file(both_root, "/etc/os-release", "ID=testos\nVERSION_ID=1\n");
        put_file(both_root, "/usr/share/host.txt", "host\n");
        put_file(both_root, "/run/confexts/cboth/etc/extension-release.d/extension-release.cboth",
                 "ID=testos\nVERSION_ID=1\n");
        put_file(both_root, "/run/confexts/cboth/etc/cboth.conf", "cboth\n");
        put_file(both_root, "/var/lib/extensions/sgood/usr/lib/extension-release.d/extension-release.sgood",
                 "ID=testos\nVERSION_ID=1\n");
        put_file(both_root, "/var/lib/extensions/sgood/usr/share/sgood.txt", "sgood\n");
        memset(junk, 'x', sizeof junk - 1);
        junk[sizeof junk - 1] = '\0';
        put_file(both_root, "/var/lib/extensions/sbroken.raw", junk);

        capture_reset(&cap);
        if (extmerge_context_new(&ctx) < 0 || extmerge_context_set_root(ctx, both_root) < 0 ||
            extmerge_context_set_log_fn(ctx, capture_log, &cap) < 0)
                die("both context");

        /* The confext part alone merges (so the failure below is the sysext part's). */
        CHECK(extmerge_context_set_class(ctx, EXTMERGE_CLASS_CONFEXT) == 0, "%s: set_class(CONFEXT)", title);
        r = extmerge_merge(ctx, EXTMERGE_FLAG_NO_RELOAD);
        path_in(p, sizeof p, both_root, "/etc/cboth.conf");
        CHECK(r == 0 && access(p, F_OK) == 0, "%s: the confext alone merges: %d %s", title, r,
              str_or(extmerge_context_last_error(ctx)));
        r = extmerge_unmerge(ctx, EXTMERGE_FLAG_NO_RELOAD);
        path_in(p, sizeof p, both_root, "/etc");
        CHECK(r == 0 && mounted_at(p) == 0, "%s: and unmerges again: %d %s", title, r,
              str_or(extmerge_context_last_error(ctx)));

        /* Both: confext first, then sysext, which fails on the broken image. */
        CHECK(extmerge_context_set_class(ctx, EXTMERGE_CLASS_BOTH) == 0, "%s: set_class(BOTH)", title);
        r = extmerge_merge(ctx, EXTMERGE_FLAG_NO_RELOAD);
        err = extmerge_context_last_error(ctx);
        CHECK(r < 0 && contains(err, "sbroken.raw"), "%s: merge fails on the sysext part's broken image: %d %s",
              title, r, str_or(err));
        path_in(p, sizeof p, both_root, "/etc");
        CHECK(mounted_at(p) == 0, "%s: after the failed merge nothing is mounted on %s (confext rolled back)",
              title, p);
        path_in(p, sizeof p, both_root, "/etc/cboth.conf");
        CHECK(access(p, F_OK) < 0, "%s: the confext's file is not visible after the failed merge: %s", title, p);
        path_in(p, sizeof p, both_root, "/usr");
        CHECK(mounted_at(p) == 0, "%s: nothing is mounted on %s", title, p);
        CHECK(mountinfo_mentions(both_root) == 0, "%s: nothing at all is mounted below %s", title, both_root);

        /* Leave the namespace clean whatever the outcome. */
        extmerge_unmerge(ctx, EXTMERGE_FLAG_NO_RELOAD);
        extmerge_context_free(ctx);
}

/* A child with a mount namespace of its own (a service's), waiting to be killed. */
static pid_t spawn_target(void) {
        int fds[2];
        char c = 0;
        pid_t pid;

        if (pipe2(fds, O_CLOEXEC) < 0)
                die("pipe2");
        pid = fork();
        if (pid < 0)
                die("fork");
        if (pid == 0) {
                close(fds[0]);
                if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                        _exit(1);
                if (write(fds[1], &c, 1) != 1)
                        _exit(1);
                for (;;)
                        pause();
        }
        close(fds[1]);
        if (read(fds[0], &c, 1) != 1)
                die("target child");
        close(fds[0]);
        return pid;
}

/* The target API: extmerge_context_set_target_pid() and _set_search_dirs() merge into
 * another process's mount namespace only, status reads that namespace, unmerge leaves
 * nothing; bad values are refused with their errno. */
static void test_target(void) {
        const char *title = "test_target";
        const char *dirs[] = { "/srv/confexts" };
        const char *rel[] = { "srv" };
        char troot[PATH_MAX], p[PATH_MAX], seen[PATH_MAX * 2];
        struct extmerge_context *ctx = NULL;
        struct extmerge_status_list *st = NULL;
        const struct extmerge_status_entry *e;
        struct capture cap;
        pid_t pid;
        int r, merged = 0;

        if (snprintf(troot, sizeof troot, "%s/targetroot", tmpdir) >= (int)sizeof troot)
                die("path too long");
        put_file(troot, "/etc/os-release", "ID=testos\nVERSION_ID=1\n");
        put_file(troot, "/srv/confexts/svc/etc/extension-release.d/extension-release.svc",
                 "ID=testos\nVERSION_ID=1\n");
        put_file(troot, "/srv/confexts/svc/etc/svc.conf", "svc\n");
        pid = spawn_target();

        capture_reset(&cap);
        if (extmerge_context_new(&ctx) < 0 || extmerge_context_set_log_fn(ctx, capture_log, &cap) < 0)
                die("target context");
        CHECK(extmerge_context_set_target_pid(ctx, -1) == -EINVAL, "%s: pid -1 is -EINVAL", title);
        CHECK(extmerge_context_set_target_pid(ctx, 99999999) == -ESRCH, "%s: a missing process is -ESRCH",
              title);
        CHECK(extmerge_context_set_search_dirs(ctx, rel, 1) == -EINVAL, "%s: a relative search dir is -EINVAL",
              title);
        CHECK(extmerge_context_set_search_dirs(ctx, NULL, 1) == -EINVAL, "%s: NULL list with n 1 is -EINVAL",
              title);
        CHECK(extmerge_context_set_unit(ctx, "../x.service") == -EINVAL, "%s: a bad unit name is -EINVAL",
              title);
        CHECK(extmerge_context_set_target_pid(ctx, pid) == 0 && extmerge_context_set_root(ctx, troot) == 0 &&
                      extmerge_context_set_search_dirs(ctx, dirs, 1) == 0 &&
                      extmerge_context_set_class(ctx, EXTMERGE_CLASS_CONFEXT) == 0,
              "%s: set target %d, root, search dirs, class", title, (int)pid);
        r = extmerge_merge(ctx, 0);
        CHECK(r == 0, "%s: merge into the target: %d %s", title, r, str_or(extmerge_context_last_error(ctx)));
        snprintf(seen, sizeof seen, "/proc/%d/root%s/etc/svc.conf", (int)pid, troot);
        CHECK(access(seen, F_OK) == 0, "%s: the target sees %s", title, seen);
        path_in(p, sizeof p, troot, "/etc/svc.conf");
        CHECK(access(p, F_OK) < 0, "%s: the caller does not see %s", title, p);
        path_in(p, sizeof p, troot, "/etc");
        CHECK(mounted_at(p) == 0, "%s: nothing is mounted on %s in the caller's namespace", title, p);
        r = extmerge_status_list_new(ctx, &st);
        CHECK(r == 0, "%s: status: %d %s", title, r, str_or(extmerge_context_last_error(ctx)));
        while (st && (e = extmerge_status_list_next(st)))
                merged += extmerge_status_entry_is_merged(e) == 1;
        extmerge_status_list_free(st);
        CHECK(merged == 1, "%s: status in the target shows /etc merged (%d)", title, merged);
        r = extmerge_unmerge(ctx, 0);
        CHECK(r == 0 && access(seen, F_OK) < 0, "%s: unmerge removes it from the target: %d %s", title, r,
              str_or(extmerge_context_last_error(ctx)));
        /* A unit that is not running: the call names it and fails with -ESRCH. */
        CHECK(extmerge_context_set_target_pid(ctx, 0) == 0 &&
                      extmerge_context_set_unit(ctx, "extmerge-c-none.service") == 0,
              "%s: set a unit", title);
        r = extmerge_merge(ctx, 0);
        CHECK(r == -ESRCH && contains(extmerge_context_last_error(ctx), "extmerge-c-none.service"),
              "%s: a unit with no process: %d %s", title, r, str_or(extmerge_context_last_error(ctx)));
        extmerge_context_free(ctx);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
}

/* Runs argv with its stdout in the file out: exit status as run_cmd(). */
static int run_cmd_out(char *const argv[], const char *out) {
        pid_t pid;
        int status;

        fflush(stdout);
        pid = fork();
        if (pid < 0)
                return -1;
        if (pid == 0) {
                int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

                if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0)
                        _exit(126);
                execv(argv[0], argv);
                _exit(127);
        }
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status))
                return -1;
        return WEXITSTATUS(status);
}

/* A whole file, NUL-terminated (malloc'd), or NULL. */
static char *read_file(const char *path) {
        FILE *f = fopen(path, "re");
        char *buf = NULL;
        size_t len = 0, cap = 0, n;

        if (!f)
                return NULL;
        for (;;) {
                if (cap - len < 4096) {
                        char *nb = realloc(buf, cap + 65536);

                        if (!nb) {
                                free(buf);
                                fclose(f);
                                return NULL;
                        }
                        buf = nb;
                        cap += 65536;
                }
                n = fread(buf + len, 1, cap - len - 1, f);
                len += n;
                if (n == 0)
                        break;
        }
        fclose(f);
        buf[len] = '\0';
        return buf;
}

/* Decodes the JSON string whose opening quote is at *pp into out (escapes \" \\ \/ \n \t
 * \r \b \f and \u00XX; other \uXXXX as '?'); *pp ends after the closing quote. */
static void json_string(const char **pp, char *out, size_t size) {
        const char *p = *pp + 1;
        size_t n = 0;

        while (*p && *p != '"') {
                char c = *p++;

                if (c == '\\' && *p) {
                        char e = *p++;

                        switch (e) {
                        case 'n': c = '\n'; break;
                        case 't': c = '\t'; break;
                        case 'r': c = '\r'; break;
                        case 'b': c = '\b'; break;
                        case 'f': c = '\f'; break;
                        case 'u': {
                                unsigned v = 0;
                                int i;

                                for (i = 0; i < 4 && *p; i++, p++)
                                        v = v * 16 + (unsigned)(*p <= '9' ? *p - '0' : (*p | 0x20) - 'a' + 10);
                                c = v < 0x80 ? (char)v : '?';
                                break;
                        }
                        default: c = e;
                        }
                }
                if (n + 1 < size)
                        out[n++] = c;
        }
        out[n] = '\0';
        *pp = *p ? p + 1 : p;
}

struct plan_row {
        char class[16];
        char name[256];
        char verdict[16];
        char reason[1024];
        int reason_done;
        int seen;
};

/* The candidates of `extmerge plan --json=short` output: (class, name, verdict, reason),
 * up to max. Keys are read in the order the CLI writes them: "class" per plan, then per
 * candidate "name", ..., "verdict", "reason". */
static size_t parse_plan(const char *json, struct plan_row *rows, size_t max) {
        char class[16] = "";
        const char *p = json;
        size_t n = 0;

        while ((p = strchr(p, '"'))) {
                char key[64];

                json_string(&p, key, sizeof key);
                if (*p != ':')
                        continue;
                p++;
                if (strcmp(key, "class") == 0 && *p == '"') {
                        json_string(&p, class, sizeof class);
                } else if (strcmp(key, "name") == 0 && *p == '"' && n < max) {
                        memset(&rows[n], 0, sizeof rows[n]);
                        snprintf(rows[n].class, sizeof rows[n].class, "%s", class);
                        json_string(&p, rows[n].name, sizeof rows[n].name);
                        n++;
                } else if (strcmp(key, "verdict") == 0 && *p == '"' && n > 0) {
                        json_string(&p, rows[n - 1].verdict, sizeof rows[n - 1].verdict);
                } else if (strcmp(key, "reason") == 0 && n > 0 && rows[n - 1].verdict[0] &&
                           !rows[n - 1].reason_done) {
                        /* The candidate's own (a string or null), not a skipped entry's. */
                        rows[n - 1].reason_done = 1;
                        if (*p == '"')
                                json_string(&p, rows[n - 1].reason, sizeof rows[n - 1].reason);
                }
        }
        return n;
}

static const char *verdict_name(int v) {
        switch (v) {
        case EXTMERGE_VERDICT_MATCH: return "match";
        case EXTMERGE_VERDICT_SKIP: return "skip";
        case EXTMERGE_VERDICT_UNUSABLE: return "unusable";
        default: return "?";
        }
}

/* The extmerge program to compare with: $EXTMERGE_CLI (tests/c/run.sh sets it), else
 * target/debug/extmerge from the working directory (the top of the checkout). */
static const char *cli_path(void) {
        const char *p = getenv("EXTMERGE_CLI");

        if (p && *p)
                return p;
        return "target/debug/extmerge";
}

/* Compares extmerge_list_new() on root with `extmerge --root=ROOT --class=CLASS plan
 * --json=short`: both succeed or both fail; when they succeed, every entry of the list
 * has the verdict (and the reason) plan prints for it, and the list has exactly plan's
 * candidates. */
static void compare_list_with_plan(const char *title, const char *cli, const char *plan_root, int class) {
        char out[PATH_MAX], root_arg[PATH_MAX + 16], class_arg[32];
        struct plan_row rows[64];
        struct extmerge_context *ctx = NULL;
        struct extmerge_list *list = NULL;
        const struct extmerge_entry *e;
        struct capture cap;
        size_t n_rows, i, n_list = 0;
        char *json;
        int r, rc;

        if (snprintf(out, sizeof out, "%s/plan.json", tmpdir) >= (int)sizeof out ||
            snprintf(root_arg, sizeof root_arg, "--root=%s", plan_root) >= (int)sizeof root_arg)
                die("path too long");
        snprintf(class_arg, sizeof class_arg, "--class=%s", extmerge_class_to_string(class));
        {
                char *argv[] = { (char *)cli, root_arg, class_arg, "plan", "--json=short", NULL };

                rc = run_cmd_out(argv, out);
        }
        json = read_file(out);
        n_rows = json ? parse_plan(json, rows, sizeof rows / sizeof rows[0]) : 0;

        capture_reset(&cap);
        if (extmerge_context_new(&ctx) < 0 || extmerge_context_set_root(ctx, plan_root) < 0 ||
            extmerge_context_set_log_fn(ctx, capture_log, &cap) < 0 || extmerge_context_set_class(ctx, class) < 0)
                die("plan context");
        r = extmerge_list_new(ctx, &list);
        CHECK((rc == 0) == (r == 0),
              "%s: extmerge %s %s plan and the list both succeed or both fail (plan exit %d, list %d: %s)", title,
              class_arg, root_arg, rc, r, str_or(extmerge_context_last_error(ctx)));
        if (rc != 0 || r != 0) {
                /* The entries of a list that succeeded where plan failed. */
                while (list && (e = extmerge_list_next(list)))
                        printf("# %s: list entry %s: %s %s\n", title, str_or(extmerge_entry_get_name(e)),
                               verdict_name(extmerge_entry_get_verdict(e)), str_or(extmerge_entry_get_reason(e)));
                goto done;
        }
        while (list && (e = extmerge_list_next(list))) {
                const char *name = extmerge_entry_get_name(e);
                const char *cls = extmerge_class_to_string(extmerge_entry_get_class(e));
                const char *verdict = verdict_name(extmerge_entry_get_verdict(e));
                const char *reason = extmerge_entry_get_reason(e);
                struct plan_row *row = NULL;

                n_list++;
                for (i = 0; i < n_rows; i++)
                        if (!rows[i].seen && strcmp(rows[i].class, str_or(cls)) == 0 &&
                            strcmp(rows[i].name, str_or(name)) == 0) {
                                row = &rows[i];
                                break;
                        }
                if (!row) {
                        CHECK(0, "%s: %s %s (verdict %s) is a candidate of plan too", title, str_or(cls),
                              str_or(name), verdict);
                        continue;
                }
                row->seen = 1;
                CHECK(strcmp(verdict, row->verdict) == 0, "%s: %s %s: list verdict %s == plan verdict %s",
                      title, row->class, row->name, verdict, row->verdict);
                CHECK(strcmp(str_or(reason), row->reason[0] ? row->reason : "(null)") == 0,
                      "%s: %s %s: list reason == plan reason (%s | %s)", title, row->class, row->name,
                      str_or(reason), row->reason[0] ? row->reason : "(null)");
        }
        for (i = 0; i < n_rows; i++)
                if (!rows[i].seen)
                        CHECK(0, "%s: plan's %s %s (verdict %s: %s) is in the list", title, rows[i].class,
                              rows[i].name, rows[i].verdict, rows[i].reason);
        CHECK(n_list == n_rows && n_rows > 0, "%s: the list has plan's %zu candidates (%zu)", title, n_rows,
              n_list);
done:
        extmerge_list_free(list);
        extmerge_context_free(ctx);
        free(json);
        CHECK(mountinfo_mentions(plan_root) == 0 && mountinfo_mentions("/run/extmerge/") == 0,
              "%s: plan and list leave nothing mounted", title);
}

/* Runs in the root child (as root, both open disk images): the C list's verdicts equal
 * those `extmerge plan --json` prints for the same root.
 *  1. A root with, per class, a matching directory, one with a wrong ID, one without an
 *     extension-release file, a vpick directory, ID=_any, garbage and empty disk images
 *     and (with mkfs.erofs) a matching and a wrong-ID erofs image, plus an entry that is
 *     no extension at all: the same verdicts and reasons, entry by entry.
 *  2. A matching sysext whose /opt is a regular file, not a directory: plan fails for
 *     the class ("<ext>/opt: Not a directory", as a merge does), so the list must not
 *     succeed with a verdict plan does not give. (The library of commit 2f88abd fails
 *     this: its list called the extension a match.) */
static void test_list_verdicts_equal_plan(void) {
        const char *title = "test_list_verdicts_equal_plan";
        char plan_root[PATH_MAX], opt_root[PATH_MAX], p[PATH_MAX], junk[4097];
        const char *cli = cli_path();
        int r;

        if (access(cli, X_OK) < 0) {
                skip(title, "no extmerge program (set EXTMERGE_CLI, or run from the checkout after cargo build)");
                return;
        }
        if (snprintf(plan_root, sizeof plan_root, "%s/planroot", tmpdir) >= (int)sizeof plan_root ||
            snprintf(opt_root, sizeof opt_root, "%s/optroot", tmpdir) >= (int)sizeof opt_root)
                die("path too long");
        put_file(plan_root, "/etc/os-release", "ID=testos\nVERSION_ID=1\n");
        put_file(plan_root, "/usr/share/host.txt", "host\n");
        /* sysext */
        put_file(plan_root, "/var/lib/extensions/good/usr/lib/extension-release.d/extension-release.good",
                 "ID=testos\nVERSION_ID=1\n");
        put_file(plan_root, "/var/lib/extensions/good/usr/share/good.txt", "good\n");
        put_file(plan_root, "/var/lib/extensions/wrongid/usr/lib/extension-release.d/extension-release.wrongid",
                 "ID=otheros\nVERSION_ID=1\n");
        put_file(plan_root, "/var/lib/extensions/wrongid/usr/share/wrongid.txt", "wrongid\n");
        put_file(plan_root, "/var/lib/extensions/norel/usr/share/norel.txt", "norel\n");
        put_file(plan_root, "/var/lib/extensions/anyid/usr/lib/extension-release.d/extension-release.anyid",
                 "ID=_any\n");
        put_file(plan_root, "/var/lib/extensions/anyid/usr/share/anyid.txt", "anyid\n");
        put_file(plan_root, "/var/lib/extensions/vp.v/vp_1/usr/lib/extension-release.d/extension-release.vp",
                 "ID=testos\nVERSION_ID=1\n");
        put_file(plan_root, "/var/lib/extensions/vp.v/vp_1/usr/share/vp.txt", "vp\n");
        put_file(plan_root, "/var/lib/extensions/README", "not an extension\n");
        memset(junk, 'x', sizeof junk - 1);
        junk[sizeof junk - 1] = '\0';
        put_file(plan_root, "/var/lib/extensions/junk.raw", junk);
        put_file(plan_root, "/run/extensions/empty.raw", "");
        path_in(p, sizeof p, plan_root, "/var/lib/extensions/img.raw");
        r = make_erofs_sysext(p, "img", "ID=testos\nVERSION_ID=1\n");
        if (r == 0) {
                path_in(p, sizeof p, plan_root, "/var/lib/extensions/imgwrong.raw");
                r = make_erofs_sysext(p, "imgwrong", "ID=otheros\nVERSION_ID=1\n");
        }
        CHECK(r == 0 || r == 127, "%s: mkfs.erofs builds the images (or is not installed: %d)", title, r);
        /* confext */
        put_file(plan_root, "/run/confexts/cgood/etc/extension-release.d/extension-release.cgood",
                 "ID=testos\nVERSION_ID=1\n");
        put_file(plan_root, "/run/confexts/cgood/etc/cgood.conf", "cgood\n");
        put_file(plan_root, "/run/confexts/cwrong/etc/extension-release.d/extension-release.cwrong",
                 "ID=otheros\nVERSION_ID=1\n");
        put_file(plan_root, "/run/confexts/cwrong/etc/cwrong.conf", "cwrong\n");
        put_file(plan_root, "/run/confexts/cnorel/etc/cnorel.conf", "cnorel\n");
        put_file(plan_root, "/var/lib/confexts/cjunk.raw", junk);
        compare_list_with_plan(title, cli, plan_root, EXTMERGE_CLASS_BOTH);

        /* 2: a matching sysext whose opt is a file. */
        put_file(opt_root, "/etc/os-release", "ID=testos\nVERSION_ID=1\n");
        put_file(opt_root, "/usr/share/host.txt", "host\n");
        put_file(opt_root, "/var/lib/extensions/good/usr/lib/extension-release.d/extension-release.good",
                 "ID=testos\nVERSION_ID=1\n");
        put_file(opt_root, "/var/lib/extensions/good/usr/share/good.txt", "good\n");
        put_file(opt_root, "/var/lib/extensions/optfile/usr/lib/extension-release.d/extension-release.optfile",
                 "ID=testos\nVERSION_ID=1\n");
        put_file(opt_root, "/var/lib/extensions/optfile/usr/share/optfile.txt", "optfile\n");
        put_file(opt_root, "/var/lib/extensions/optfile/opt", "a file where a directory belongs\n");
        compare_list_with_plan(title, cli, opt_root, EXTMERGE_CLASS_SYSEXT);
}

static int enter_private_ns(void) {
        if (unshare(CLONE_NEWNS) < 0) {
                perror("unshare(CLONE_NEWNS)");
                return -1;
        }
        /* Private first, so nothing propagates to the host; then shared again in peer
         * groups of our own, as on a host booted by systemd. */
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount(NULL, "/", NULL, MS_REC | MS_SHARED, NULL) < 0) {
                perror("mount --make-rshared /");
                return -1;
        }
        if (mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0) {
                perror("mount tmpfs /run");
                return -1;
        }
        return 0;
}

static void test_merge(void) {
        int pipefd[2], counts[3] = { 0, 0, 0 }, status;
        pid_t pid;

        if (!wanted("test_merge") && !wanted("test_class_both_all_or_nothing") &&
            !wanted("test_list_verdicts_equal_plan") && !wanted("test_target"))
                return;
        if (geteuid() != 0) {
                skip("merge, refresh, unmerge", "needs root");
                return;
        }
        if (pipe2(pipefd, O_CLOEXEC) < 0)
                die("pipe2");
        fflush(stdout);
        pid = fork();
        if (pid < 0)
                die("fork");
        if (pid == 0) {
                int c[3];

                close(pipefd[0]);
                n_passed = n_failed = n_skipped = 0;
                if (enter_private_ns() < 0) {
                        skip("merge, refresh, unmerge", "cannot make a private mount namespace");
                } else {
                        if (wanted("test_merge")) {
                                merge_tests();
                                image_list_tests();
                        }
                        if (wanted("test_class_both_all_or_nothing"))
                                test_class_both_all_or_nothing();
                        if (wanted("test_list_verdicts_equal_plan"))
                                test_list_verdicts_equal_plan();
                        if (wanted("test_target"))
                                test_target();
                }
                c[0] = n_passed;
                c[1] = n_failed;
                c[2] = n_skipped;
                if (write(pipefd[1], c, sizeof c) != (ssize_t)sizeof c)
                        exit(3);
                close(pipefd[1]);
                fflush(stdout);
                exit(0);
        }
        close(pipefd[1]);
        if (read(pipefd[0], counts, sizeof counts) != (ssize_t)sizeof counts) {
                counts[0] = counts[2] = 0;
                counts[1] = 1;
                printf("not ok - merge child died\n");
        }
        close(pipefd[0]);
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                counts[1]++;
                printf("not ok - merge child exited abnormally (status 0x%x)\n", status);
        }
        n_passed += counts[0];
        n_failed += counts[1];
        n_skipped += counts[2];
        n_tests += counts[0] + counts[1] + counts[2];
}

/* test-extmerge [TEST...]: runs the named tests only (test_context, test_env_log_priority,
 * test_errors, test_list, test_log, test_status_unmerged, test_merge,
 * test_class_both_all_or_nothing, test_list_verdicts_equal_plan, test_target), else
 * all. The last four run as root in a private mount namespace. */
int main(int argc, char **argv) {
        only = argv + 1;
        n_only = argc - 1;
        setvbuf(stdout, NULL, _IOLBF, 0);
        unsetenv("EXTMERGE_LOG");
        unsetenv("SYSTEMD_SYSEXT_HIERARCHIES");
        unsetenv("SYSTEMD_CONFEXT_HIERARCHIES");
        unsetenv("SYSTEMD_SYSEXT_MUTABLE_MODE");
        unsetenv("SYSTEMD_CONFEXT_MUTABLE_MODE");
        unsetenv("SYSTEMD_OS_RELEASE");
        make_fixture();

        have_openat2 = probe_openat2();
        if (!have_openat2)
                printf("# openat2() fails here (%s): tests that read a root are skipped\n", strerror(errno));

        if (wanted("test_context"))
                test_context();
        if (wanted("test_env_log_priority"))
                test_env_log_priority();
        if (wanted("test_errors"))
                test_errors();
        if (have_openat2) {
                if (wanted("test_list"))
                        test_list();
                if (wanted("test_log"))
                        test_log();
                if (wanted("test_status_unmerged"))
                        test_status_unmerged();
                test_merge();
        } else {
                skip("listing", "no openat2()");
                skip("log callback", "no openat2()");
                skip("status", "no openat2()");
                skip("merge, refresh, unmerge", "no openat2()");
        }

        remove_fixture();
        if (n_skipped)
                printf("%d passed, %d failed, %d skipped\n", n_passed, n_failed, n_skipped);
        else
                printf("%d passed, %d failed\n", n_passed, n_failed);
        return n_failed > 0 ? 1 : 0;
}
