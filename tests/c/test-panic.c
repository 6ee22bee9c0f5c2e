/* SPDX-License-Identifier: MIT */
/*
 * EXTMERGE_ERROR_PANIC and context poisoning, from C. Needs libextmerge built with the
 * capi crate's test-only cargo feature "fault-injection" (tests/c/run.sh builds one in
 * target/fault-injection): $EXTMERGE_TEST_PANIC naming a function makes its calls panic
 * inside the library. Checks that the panic returns EXTMERGE_ERROR_PANIC with the
 * panic's message, that every later call on the context returns it without doing
 * anything, what the getters return, that free works (and, under a leak checker, leaks
 * nothing), and that other contexts are not affected.
 *
 * Output as test-extmerge.c: "ok N - ..." / "not ok N - ..." and "N passed, M failed".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include <extmerge.h>

static int n_tests, n_passed, n_failed;

static void check(int cond, int line, const char *fmt, ...) {
        va_list ap;

        n_tests++;
        if (cond)
                n_passed++;
        else
                n_failed++;
        printf("%s %d - ", cond ? "ok" : "not ok", n_tests);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        if (!cond)
                printf("  # at line %d", line);
        putchar('\n');
        fflush(stdout);
}

#define CHECK(cond, ...) check(!!(cond), __LINE__, __VA_ARGS__)

static int contains(const char *haystack, const char *needle) {
        return haystack && needle && strstr(haystack, needle) != NULL;
}

static const char *str_or(const char *s) {
        return s ? s : "(null)";
}

struct capture {
        int errors;
        char last[1024];
};

static void capture_log(void *userdata, int priority, const char *message) {
        struct capture *c = userdata;

        if (priority == LOG_ERR)
                c->errors++;
        snprintf(c->last, sizeof c->last, "%s", message);
}

int main(void) {
        struct extmerge_context *ctx = NULL, *other = NULL;
        struct extmerge_list *list = NULL;
        struct extmerge_status_list *status = NULL;
        struct capture cap = { 0, "" };
        const char *err;
        int r;

        setvbuf(stdout, NULL, _IOLBF, 0);
        unsetenv("EXTMERGE_TEST_PANIC");
        unsetenv("EXTMERGE_LOG");

        CHECK(extmerge_context_new(&ctx) == 0 && ctx, "context_new");
        CHECK(extmerge_context_set_log_fn(ctx, capture_log, &cap) == 0, "set_log_fn");
        CHECK(extmerge_context_set_image_policy(ctx, "usr=verity") == 0, "set_image_policy");
        CHECK(extmerge_context_new(&other) == 0 && other, "a second context");
        CHECK(extmerge_context_set_log_fn(other, NULL, NULL) == 0, "second context is silent");

        /* The hook: calls of extmerge_context_set_class panic inside the library. */
        setenv("EXTMERGE_TEST_PANIC", "extmerge_context_set_class", 1);
        r = extmerge_context_set_class(ctx, EXTMERGE_CLASS_SYSEXT);
        err = extmerge_context_last_error(ctx);
        CHECK(r == EXTMERGE_ERROR_PANIC, "a panic returns EXTMERGE_ERROR_PANIC (%d), not an errno: %d",
              EXTMERGE_ERROR_PANIC, r);
        CHECK(contains(err, "internal error (panic): ") && contains(err, "fault injection") &&
                      contains(err, "poisoned"),
              "the last error has the panic's message and says the context is poisoned: %s", str_or(err));
        CHECK(cap.errors == 1 && contains(cap.last, "extmerge_context_set_class: internal error (panic)"),
              "the error reaches the log function at LOG_ERR: %s", cap.last);
        unsetenv("EXTMERGE_TEST_PANIC");

        /* Poisoned: every later call fails at once, doing nothing. */
        r = extmerge_context_set_class(ctx, EXTMERGE_CLASS_SYSEXT);
        err = extmerge_context_last_error(ctx);
        CHECK(r == EXTMERGE_ERROR_PANIC, "the same call again (no hook now) returns EXTMERGE_ERROR_PANIC: %d", r);
        CHECK(contains(err, "poisoned by an earlier panic") && contains(err, "fault injection"),
              "the last error says the context is poisoned by an earlier panic, with its message: %s",
              str_or(err));
        CHECK(extmerge_context_set_root(ctx, "/") == EXTMERGE_ERROR_PANIC &&
                      extmerge_context_set_force(ctx, 1) == EXTMERGE_ERROR_PANIC &&
                      extmerge_context_set_log_priority(ctx, LOG_DEBUG) == EXTMERGE_ERROR_PANIC &&
                      extmerge_context_set_image_policy(ctx, NULL) == EXTMERGE_ERROR_PANIC &&
                      extmerge_context_set_log_fn(ctx, NULL, NULL) == EXTMERGE_ERROR_PANIC,
              "every setter returns EXTMERGE_ERROR_PANIC");
        CHECK(extmerge_merge(ctx, 0) == EXTMERGE_ERROR_PANIC && extmerge_unmerge(ctx, 0) == EXTMERGE_ERROR_PANIC &&
                      extmerge_refresh(ctx, 0) == EXTMERGE_ERROR_PANIC,
              "merge, unmerge and refresh return EXTMERGE_ERROR_PANIC without running");
        CHECK(extmerge_list_new(ctx, &list) == EXTMERGE_ERROR_PANIC && list == NULL,
              "list_new returns EXTMERGE_ERROR_PANIC and leaves *ret alone");
        CHECK(extmerge_status_list_new(ctx, &status) == EXTMERGE_ERROR_PANIC && status == NULL,
              "status_list_new returns EXTMERGE_ERROR_PANIC and leaves *ret alone");
        CHECK(cap.errors == 12 && contains(cap.last, "extmerge_status_list_new: ") &&
                      contains(cap.last, "poisoned"),
              "each one is logged at LOG_ERR (%d): %s", cap.errors, cap.last);
        /* Const getters: their failure value; the last error: as always. */
        CHECK(extmerge_context_get_log_priority(ctx) == EXTMERGE_ERROR_PANIC,
              "get_log_priority on a poisoned context is EXTMERGE_ERROR_PANIC");
        CHECK(extmerge_context_get_image_policy(ctx) == NULL, "get_image_policy on a poisoned context is NULL");
        CHECK(contains(extmerge_context_last_error(ctx), "poisoned"), "last_error still works");

        /* Other contexts are not affected. */
        CHECK(extmerge_context_set_class(other, EXTMERGE_CLASS_CONFEXT) == 0 &&
                      extmerge_context_get_log_priority(other) == LOG_ERR &&
                      extmerge_context_last_error(other) == NULL,
              "another context works as before");

        /* Functions without a context: their documented failure value, as before. */
        CHECK(extmerge_context_new(NULL) == -EINVAL, "context_new(NULL) is still -EINVAL");

        extmerge_context_free(ctx);
        extmerge_context_free(other);
        CHECK(1, "context_free frees a poisoned context");

        printf("%d passed, %d failed\n", n_passed, n_failed);
        return n_failed > 0 ? 1 : 0;
}
