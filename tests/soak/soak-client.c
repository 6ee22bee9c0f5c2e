/* SPDX-License-Identifier: MIT */
/*
 * A long-lived libextmerge client for tests/soak/run-soak.sh: one context on ROOT,
 * kept for the whole run, does what it is told on stdin, one command a line, and
 * answers one line on stdout for each, so that the soak script can watch this
 * process's open file descriptors and RSS (/proc/PID/fd, /proc/PID/status) over
 * thousands of merges while it runs beside the CLI on the same root.
 *
 * Usage: soak-client ROOT
 *
 * Commands (CLASS: sysext, confext or both):
 *   merge CLASS | refresh CLASS | unmerge CLASS
 *       -> "OK <verb>" or "ERR <verb> <negative errno> <last error>"
 *   list CLASS    -> "OK list <entries> <unusable>"   (extmerge_list_new)
 *   status CLASS  -> "OK status <merged hierarchies> <extensions>" (extmerge_status_list_new)
 *   reset         -> "OK reset": frees the context and makes a new one
 *   quit          -> exits 0
 * Anything else -> "ERR <line> -22 unknown command". Messages of the library's log
 * callback (at LOG_INFO and above) are counted, not printed; one that speaks of a
 * panic is counted apart and reported in every answer as "panics=N" when N > 0.
 * The last error is printed with control characters as '?', on one line.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include <extmerge.h>

static unsigned long n_messages, n_panics;

static void log_fn(void *userdata, int priority, const char *message) {
        (void)userdata;
        (void)priority;
        n_messages++;
        if (message && strstr(message, "panic"))
                n_panics++;
}

static struct extmerge_context *new_context(const char *root) {
        struct extmerge_context *ctx = NULL;
        int r;

        r = extmerge_context_new(&ctx);
        if (r < 0) {
                fprintf(stderr, "soak-client: extmerge_context_new: %s\n", strerror(-r));
                exit(2);
        }
        r = extmerge_context_set_root(ctx, root);
        if (r < 0) {
                fprintf(stderr, "soak-client: set_root %s: %s\n", root,
                        extmerge_context_last_error(ctx));
                exit(2);
        }
        if (extmerge_context_set_log_fn(ctx, log_fn, NULL) < 0 ||
            extmerge_context_set_log_priority(ctx, LOG_INFO) < 0 ||
            extmerge_context_set_no_reload(ctx, 1) < 0) {
                fprintf(stderr, "soak-client: context setup failed\n");
                exit(2);
        }
        return ctx;
}

static int parse_class(const char *s) {
        if (!s || strcmp(s, "both") == 0)
                return EXTMERGE_CLASS_BOTH;
        if (strcmp(s, "sysext") == 0)
                return EXTMERGE_CLASS_SYSEXT;
        if (strcmp(s, "confext") == 0)
                return EXTMERGE_CLASS_CONFEXT;
        return -1;
}

/* "OK verb" / "ERR verb errno message" with the panic count appended. */
static void answer(struct extmerge_context *ctx, const char *verb, int r, const char *extra) {
        if (r >= 0) {
                printf("OK %s%s%s", verb, extra ? " " : "", extra ? extra : "");
        } else {
                const char *e = extmerge_context_last_error(ctx);
                printf("ERR %s %d ", verb, r);
                for (; e && *e; e++)
                        putchar((unsigned char)*e < 0x20 || *e == 0x7f ? '?' : *e);
                if (!extmerge_context_last_error(ctx))
                        fputs("(no last error)", stdout);
        }
        if (n_panics)
                printf(" panics=%lu", n_panics);
        putchar('\n');
        fflush(stdout);
}

int main(int argc, char **argv) {
        struct extmerge_context *ctx;
        char line[512];

        if (argc != 2) {
                fprintf(stderr, "usage: %s ROOT\n", argv[0]);
                return 2;
        }
        ctx = new_context(argv[1]);
        setvbuf(stdout, NULL, _IOLBF, 0);

        while (fgets(line, sizeof line, stdin)) {
                char *verb, *arg, *save = NULL;
                char extra[128];
                int class_, r;

                line[strcspn(line, "\n")] = '\0';
                verb = strtok_r(line, " ", &save);
                arg = strtok_r(NULL, " ", &save);
                if (!verb)
                        continue;
                if (strcmp(verb, "quit") == 0)
                        break;
                if (strcmp(verb, "reset") == 0) {
                        extmerge_context_free(ctx);
                        ctx = new_context(argv[1]);
                        answer(ctx, verb, 0, NULL);
                        continue;
                }
                class_ = parse_class(arg);
                if (class_ < 0 || extmerge_context_set_class(ctx, class_) < 0) {
                        printf("ERR %s -22 unknown class\n", verb);
                        fflush(stdout);
                        continue;
                }
                if (strcmp(verb, "merge") == 0) {
                        answer(ctx, verb, extmerge_merge(ctx, EXTMERGE_FLAG_NO_RELOAD), NULL);
                } else if (strcmp(verb, "refresh") == 0) {
                        answer(ctx, verb, extmerge_refresh(ctx, EXTMERGE_FLAG_NO_RELOAD), NULL);
                } else if (strcmp(verb, "unmerge") == 0) {
                        answer(ctx, verb, extmerge_unmerge(ctx, EXTMERGE_FLAG_NO_RELOAD), NULL);
                } else if (strcmp(verb, "list") == 0) {
                        struct extmerge_list *it = NULL;
                        const struct extmerge_entry *e;
                        unsigned n = 0, unusable = 0;

                        r = extmerge_list_new(ctx, &it);
                        if (r >= 0) {
                                while ((e = extmerge_list_next(it))) {
                                        n++;
                                        /* Touch every getter: the strings must be readable. */
                                        if (extmerge_entry_get_verdict(e) == EXTMERGE_VERDICT_UNUSABLE)
                                                unusable++;
                                        (void)strlen(extmerge_entry_get_name(e));
                                        (void)strlen(extmerge_entry_get_path(e));
                                        if (extmerge_entry_get_reason(e))
                                                (void)strlen(extmerge_entry_get_reason(e));
                                }
                                extmerge_list_free(it);
                        }
                        snprintf(extra, sizeof extra, "%u %u", n, unusable);
                        answer(ctx, verb, r, extra);
                } else if (strcmp(verb, "status") == 0) {
                        struct extmerge_status_list *it = NULL;
                        const struct extmerge_status_entry *e;
                        unsigned merged = 0, exts = 0;

                        r = extmerge_status_list_new(ctx, &it);
                        if (r >= 0) {
                                while ((e = extmerge_status_list_next(it))) {
                                        const char *const *x;

                                        (void)strlen(extmerge_status_entry_get_hierarchy(e));
                                        if (extmerge_status_entry_is_merged(e) <= 0)
                                                continue;
                                        merged++;
                                        for (x = extmerge_status_entry_get_extensions(e); x && *x; x++)
                                                exts++;
                                }
                                extmerge_status_list_free(it);
                        }
                        snprintf(extra, sizeof extra, "%u %u", merged, exts);
                        answer(ctx, verb, r, extra);
                } else {
                        printf("ERR %s -22 unknown command\n", verb);
                        fflush(stdout);
                }
        }
        extmerge_context_free(ctx);
        return 0;
}
