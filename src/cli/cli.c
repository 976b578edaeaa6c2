#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "maec: error: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

int cli_set_threads(const char *cmd, int n)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (n > 0 && cores > 0 && n > cores)
        fprintf(stderr, "maec: warning: %s: --threads %d is more than the %ld cores here; the compute threads "
                "will wait for each other (give at most %ld)\n", cmd, n, cores, cores);
    maec_set_threads(n);
    return maec_get_threads();
}

int cli_fail(const maec_error *err)
{
    cli_error("%s", err->msg);
    return 1;
}

static int same_name(const char *a, const char *b, size_t blen)
{
    size_t i = 0;
    for (; a[i] && i < blen; i++) {
        char x = a[i] == '_' ? '-' : a[i], y = b[i] == '_' ? '-' : b[i];
        if (x != y) return 0;
    }
    return a[i] == 0 && i == blen;
}

static int model_command;
void cli_set_model_command(int on) { model_command = on; }

static void print_usage(const char *cmd, const char *usage, const cli_opt *opts, int nopts)
{
    printf("usage: maec %s %s\n\noptions:\n", cmd, usage);
    for (int i = 0; i < nopts; i++) {
        const char *arg = opts[i].kind == OPT_BOOL ? "" : opts[i].kind == OPT_STR ? " S" :
                          (opts[i].kind == OPT_FLOAT || opts[i].kind == OPT_DOUBLE) ? " X" : " N";
        printf("  --%s%s%*s%s\n", opts[i].name, arg,
               (int)(28 - strlen(opts[i].name) - strlen(arg)) > 1 ? (int)(28 - strlen(opts[i].name) - strlen(arg)) : 1, "",
               opts[i].help);
    }
    if (model_command) {
        printf("  --%s%*s%s\n", "device S", 28 - 8, "",
               "cpu (default; MAEC_DEVICE), cuda or cuda:N (a build with CUDA: make CUDA=1)");
        printf("  --%s%*s%s\n", "tf32", 28 - 4, "",
               "on the GPU, products in TF32: faster, about 3 decimal digits (MAEC_TF32=1)");
    }
}

static int set_value(const char *cmd, cli_opt *o, const char *v)
{
    char *end;
    errno = 0;
    switch (o->kind) {
    case OPT_STR:
        *(const char **)o->dst = v;
        return 0;
    case OPT_INT: {
        long x = strtol(v, &end, 10);
        if (*v == 0 || *end || errno || x < -2147483647L || x > 2147483647L ||
            (o->min <= o->max && (x < o->min || x > o->max))) {
            if (o->min <= o->max)
                cli_error("%s: --%s wants an integer in [%.0f, %.0f], got '%s'", cmd, o->name, o->min, o->max, v);
            else
                cli_error("%s: --%s wants an integer, got '%s'", cmd, o->name, v);
            return -1;
        }
        *(int *)o->dst = (int)x;
        return 0;
    }
    case OPT_U64: {
        if (*v == '-') {
            cli_error("%s: --%s wants a non-negative integer, got '%s'", cmd, o->name, v);
            return -1;
        }
        unsigned long long x = strtoull(v, &end, 10);
        if (*v == 0 || *end || errno) {
            cli_error("%s: --%s wants a non-negative integer, got '%s'", cmd, o->name, v);
            return -1;
        }
        if (o->min <= o->max && ((double)x < o->min || (double)x > o->max)) {
            cli_error("%s: --%s wants an integer in [%.0f, %.0f], got '%s'", cmd, o->name, o->min, o->max, v);
            return -1;
        }
        *(uint64_t *)o->dst = (uint64_t)x;
        return 0;
    }
    case OPT_FLOAT:
    case OPT_DOUBLE: {
        double x = strtod(v, &end);
        if (*v == 0 || *end || errno || !isfinite(x) ||
            (o->min <= o->max && (x < o->min || x > o->max))) {
            if (o->min <= o->max)
                cli_error("%s: --%s wants a number in [%g, %g], got '%s'", cmd, o->name, o->min, o->max, v);
            else
                cli_error("%s: --%s wants a number, got '%s'", cmd, o->name, v);
            return -1;
        }
        if (o->kind == OPT_DOUBLE) *(double *)o->dst = x;
        else *(float *)o->dst = (float)x;
        return 0;
    }
    case OPT_BOOL:
        if (!strcmp(v, "1") || !strcmp(v, "true")) *(int *)o->dst = 1;
        else if (!strcmp(v, "0") || !strcmp(v, "false")) *(int *)o->dst = 0;
        else {
            cli_error("%s: --%s wants true or false, got '%s'", cmd, o->name, v);
            return -1;
        }
        return 0;
    }
    return -1;
}

static int is_help(const char *a) { return !strcmp(a, "--help") || !strcmp(a, "-h"); }

int cli_wants_help(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (is_help(argv[i])) return 1;
    return 0;
}

const char *cli_find(int argc, char **argv, const char *name)
{
    size_t n = strlen(name);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2)) continue;
        a += 2;
        size_t k = 0;
        while (k < n && a[k] && (a[k] == name[k] || (a[k] == '_' && name[k] == '-'))) k++;
        if (k != n) continue;
        if (a[k] == '=') return a + k + 1;
        if (a[k] == 0 && i + 1 < argc) return argv[i + 1];
    }
    return NULL;
}

static int all_digits(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return 0;
    return 1;
}

int cli_parse(const char *cmd, const char *usage, int argc, char **argv, cli_opt *opts,
              int nopts, char **pos, int maxpos, int *npos)
{
    *npos = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            print_usage(cmd, usage, opts, nopts);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == 0) {
            if (*npos >= maxpos) {
                cli_error("%s: unexpected argument '%s' (see maec %s --help)", cmd, a, cmd);
                return -1;
            }
            pos[(*npos)++] = argv[i];
            continue;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        cli_opt *o = NULL;
        for (int k = 0; k < nopts; k++)
            if (same_name(opts[k].name, name, nlen)) o = &opts[k];
        if (!o) {
            cli_error("%s: unknown option '--%.*s' (see maec %s --help)", cmd, (int)nlen, name, cmd);
            return -1;
        }
        if (o->seen) {
            cli_error("%s: --%s given twice", cmd, o->name);
            return -1;
        }
        o->seen = 1;
        const char *v;
        if (eq) {
            v = eq + 1;
        } else if (o->kind == OPT_BOOL) {
            *(int *)o->dst = 1;
            continue;
        } else {
            if (i + 1 >= argc) {
                cli_error("%s: --%s needs a value", cmd, o->name);
                return -1;
            }
            v = argv[++i];
            /* --input-size H W: two numbers, taken as HxW */
            static char size_buf[2][64];
            static int size_k;
            if (!strcmp(o->name, "input-size") && i + 1 < argc && all_digits(v) && all_digits(argv[i + 1])) {
                size_k ^= 1;
                snprintf(size_buf[size_k], sizeof size_buf[size_k], "%.20sx%.20s", v, argv[i + 1]);
                v = size_buf[size_k];
                i++;
            }
        }
        if (set_value(cmd, o, v)) return -1;
    }
    return 0;
}

int cli_seen(const cli_opt *opts, int nopts, const char *name)
{
    for (int k = 0; k < nopts; k++)
        if (same_name(opts[k].name, name, strlen(name))) return opts[k].seen;
    return 0;
}

int cli_parse_size(const char *s, int *h, int *w)
{
    /* "N" (square), "HxW" or "H,W" */
    char *end;
    long a = strtol(s, &end, 10), b = a;
    if (end == s) return -1;
    if (*end == 'x' || *end == 'X' || *end == ',') {
        const char *t = end + 1;
        b = strtol(t, &end, 10);
        if (end == t) return -1;
    }
    if (*end || a < 1 || b < 1 || a > 16384 || b > 16384) return -1;
    *h = (int)a;
    *w = (int)b;
    return 0;
}
