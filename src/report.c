/* The run report: a run folder read into curves, tables and pictures, and
 * written as one self-contained HTML file (report.h). */
#define _POSIX_C_SOURCE 200809L
#include "report.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "util.h"

/* the largest metrics file and picture a report reads */
#define REPORT_MAX_METRICS ((size_t)1 << 30)
#define REPORT_MAX_PNG ((size_t)16 << 20)

/* ------------------------------------------------------------ small helpers */

char *report_base64(const unsigned char *d, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t len;
    if (!size_mul((n + 2) / 3, 4, &len) || !size_add(len, 1, &len)) return NULL;
    char *o = malloc(len), *p = o;
    if (!o) return NULL;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned v = (unsigned)d[i] << 16 | (unsigned)d[i + 1] << 8 | d[i + 2];
        *p++ = tab[v >> 18], *p++ = tab[(v >> 12) & 63], *p++ = tab[(v >> 6) & 63], *p++ = tab[v & 63];
    }
    if (i < n) {
        unsigned v = (unsigned)d[i] << 16 | (i + 1 < n ? (unsigned)d[i + 1] << 8 : 0);
        *p++ = tab[v >> 18], *p++ = tab[(v >> 12) & 63];
        *p++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        *p++ = '=';
    }
    *p = 0;
    return o;
}

static int add_gap(report_run *r, const char *fmt, ...) MAEC_PRINTF(2, 3);
static int add_gap(report_run *r, const char *fmt, ...)
{
    char buf[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char **g = realloc(r->gaps, (size_t)(r->ngaps + 1) * sizeof *g);
    if (!g) return -1;
    r->gaps = g;
    if (!(g[r->ngaps] = strdup(buf))) return -1;
    r->ngaps++;
    return 0;
}

/* a JSON value as the text a table shows */
static void value_text(const cJSON *v, char *buf, size_t n)
{
    if (cJSON_IsString(v)) snprintf(buf, n, "%s", v->valuestring);
    else if (cJSON_IsBool(v)) snprintf(buf, n, "%s", cJSON_IsTrue(v) ? "true" : "false");
    else if (cJSON_IsNumber(v)) snprintf(buf, n, "%.6g", v->valuedouble);
    else if (cJSON_IsArray(v)) {
        size_t k = 0;
        buf[0] = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, v) {
            char t[64];
            value_text(e, t, sizeof t);
            k += (size_t)snprintf(buf + k, k < n ? n - k : 0, "%s%s", k ? "," : "", t);
            if (k >= n) break;
        }
    } else snprintf(buf, n, "null");
}

/* the members of a config.json object, nested objects (the model) flattened
 * into the same level */
static void flatten(const cJSON *o, cJSON *flat)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, o) {
        if (cJSON_IsObject(e)) {
            flatten(e, flat);
            continue;
        }
        char buf[1100];
        value_text(e, buf, sizeof buf);
        if (e->string && !cJSON_GetObjectItemCaseSensitive(flat, e->string))
            cJSON_AddStringToObject(flat, e->string, buf);
    }
}

/* finetune's command.txt: its first line, "maec finetune --a b --c=d --e",
 * as {"a":"b","c":"d","e":"true"} */
static void parse_command(const char *text, cJSON *flat)
{
    char line[4096];
    snprintf(line, sizeof line, "%.*s", (int)strcspn(text, "\n"), text);
    char *save = NULL, *pend = NULL;
    for (char *t = strtok_r(line, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
        if (pend) {
            if (!strncmp(t, "--", 2)) cJSON_AddStringToObject(flat, pend, "true");
            else {
                cJSON_AddStringToObject(flat, pend, t);
                pend = NULL;
                continue;
            }
            pend = NULL;
        }
        if (strncmp(t, "--", 2)) continue;
        t += 2;
        for (char *c = t; *c; c++)
            if (*c == '-') *c = '_';
        char *eq = strchr(t, '=');
        if (eq) {
            *eq = 0;
            cJSON_AddStringToObject(flat, t, eq + 1);
        } else pend = t;
    }
    if (pend) cJSON_AddStringToObject(flat, pend, "true");
}

static int has_num(const cJSON *o, const char *k)
{
    return cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(o, k));
}

static double num(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k)->valuedouble;
}

/* ------------------------------------------------------------ reading a run */

static void read_metrics(const char *dir, report_run *r)
{
    char p[1200];
    snprintf(p, sizeof p, "%s/metrics.jsonl", dir);
    char *buf = NULL;
    size_t len = 0;
    maec_error e = {0};
    if (read_file(p, &buf, &len, REPORT_MAX_METRICS, &e)) {
        add_gap(r, "no metrics.jsonl (%s): no curves", e.msg);
        return;
    }
    int lineno = 0, bad = 0, first_bad = 0;
    char *s = buf;
    while (*s) {
        char *nl = strchr(s, '\n');
        int cut = nl == NULL; /* the last line has no newline: written in part */
        if (nl) *nl = 0;
        lineno++;
        if (*s) {
            cJSON *o = cJSON_Parse(s);
            if (!cJSON_IsObject(o)) {
                cJSON_Delete(o);
                if (cut)
                    add_gap(r, "metrics.jsonl: its last line (%d) is cut short, as a run killed mid-line leaves it; skipped",
                            lineno);
                else if (!bad++)
                    first_bad = lineno;
            } else if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "final"))) {
                cJSON_Delete(r->final);
                r->final = o;
            } else {
                cJSON_AddItemToArray(r->rows, o);
            }
        }
        if (!nl) break;
        s = nl + 1;
    }
    if (bad)
        add_gap(r, "metrics.jsonl: %d line%s not JSON records (the first: line %d); skipped", bad,
                bad > 1 ? "s are" : " is", first_bad);
    if (cJSON_GetArraySize(r->rows) == 0 && !r->final) add_gap(r, "metrics.jsonl holds no records yet");
    free(buf);
}

static int read_png_b64(const char *path, char **out, report_run *r)
{
    char *buf = NULL;
    size_t len = 0;
    maec_error e = {0};
    *out = NULL;
    if (read_file(path, &buf, &len, REPORT_MAX_PNG, &e)) {
        add_gap(r, "%s", e.msg);
        return -1;
    }
    if (len < 8 || memcmp(buf, "\x89PNG\r\n\x1a\n", 8)) {
        add_gap(r, "%s is not a PNG file; left out", path);
        free(buf);
        return -1;
    }
    *out = report_base64((const unsigned char *)buf, len);
    free(buf);
    return *out ? 0 : -1;
}

typedef struct {
    int epoch;
    char name[64];
} recon_file;

static int cmp_recon(const void *a, const void *b)
{
    const recon_file *x = a, *y = b;
    return (x->epoch > y->epoch) - (x->epoch < y->epoch);
}

static void read_recon(const char *dir, report_run *r)
{
    char p[1200];
    snprintf(p, sizeof p, "%s/recon", dir);
    DIR *d = opendir(p);
    if (!d) return;
    recon_file *f = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        int ep;
        char tail[16];
        if (sscanf(e->d_name, "epoch-%d.%15s", &ep, tail) != 2 || strcmp(tail, "png")) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            recon_file *nf = realloc(f, (size_t)cap * sizeof *f);
            if (!nf) break;
            f = nf;
        }
        f[n].epoch = ep;
        snprintf(f[n].name, sizeof f[n].name, "%.63s", e->d_name);
        n++;
    }
    closedir(d);
    if (n) qsort(f, (size_t)n, sizeof *f, cmp_recon);
    r->recon_epoch = malloc((size_t)(n ? n : 1) * sizeof(int));
    r->recon_b64 = malloc((size_t)(n ? n : 1) * sizeof(char *));
    for (int i = 0; r->recon_epoch && r->recon_b64 && i < n; i++) {
        char fp[1300];
        snprintf(fp, sizeof fp, "%s/recon/%s", dir, f[i].name);
        char *b;
        if (read_png_b64(fp, &b, r)) continue;
        r->recon_epoch[r->nrecon] = f[i].epoch;
        r->recon_b64[r->nrecon++] = b;
    }
    free(f);
}

static void detect_kind(report_run *r, const char *command_txt)
{
    const cJSON *m = r->machine ? cJSON_GetArrayItem(r->machine, 0) : NULL;
    const cJSON *c = m ? cJSON_GetObjectItemCaseSensitive(m, "command") : NULL;
    if (cJSON_IsString(c)) {
        snprintf(r->kind, sizeof r->kind, "%.15s", c->valuestring);
        return;
    }
    if (command_txt && !strncmp(command_txt, "maec finetune", 13)) {
        snprintf(r->kind, sizeof r->kind, "finetune");
        return;
    }
    if (r->config && cJSON_GetObjectItemCaseSensitive(r->config, "mask_ratio")) {
        snprintf(r->kind, sizeof r->kind, "pretrain");
        return;
    }
    const cJSON *row = cJSON_GetArrayItem(r->rows, 0);
    if (row && has_num(row, "epoch") && !has_num(row, "step") && has_num(row, "loss"))
        snprintf(r->kind, sizeof r->kind, "linprobe");
    else if (row && has_num(row, "knn_top1") && !has_num(row, "step"))
        snprintf(r->kind, sizeof r->kind, "knn");
    else
        snprintf(r->kind, sizeof r->kind, "run");
}

int report_run_load(const char *dir, report_run *r, maec_error *err)
{
    memset(r, 0, sizeof *r);
    struct stat st;
    if (stat(dir, &st) != 0) return maec_fail(err, MAEC_EIO, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return maec_fail(err, MAEC_EINVAL, "%s is not a run folder", dir);
    DIR *d = opendir(dir);
    if (!d) return maec_fail(err, MAEC_EIO, "%s: %s", dir, strerror(errno));
    closedir(d);
    snprintf(r->dir, sizeof r->dir, "%s", dir);
    {
        char tmp[1024];
        snprintf(tmp, sizeof tmp, "%s", dir);
        size_t l = strlen(tmp);
        while (l > 1 && tmp[l - 1] == '/') tmp[--l] = 0;
        const char *b = strrchr(tmp, '/');
        snprintf(r->name, sizeof r->name, "%.255s", b && b[1] ? b + 1 : tmp);
    }
    r->rows = cJSON_CreateArray();
    r->config = cJSON_CreateObject();
    if (!r->rows || !r->config) {
        report_run_free(r);
        return maec_fail(err, MAEC_ENOMEM, "out of memory");
    }
    char p[1200], *buf = NULL, *command_txt = NULL;
    size_t len;
    maec_error e = {0};
    int found = 0;
    snprintf(p, sizeof p, "%s/metrics.jsonl", dir);
    found += stat(p, &st) == 0;
    read_metrics(dir, r);

    snprintf(p, sizeof p, "%s/config.json", dir);
    if (!read_file(p, &buf, &len, 1 << 20, &e)) {
        found++;
        cJSON *o = cJSON_Parse(buf);
        if (cJSON_IsObject(o)) flatten(o, r->config);
        else add_gap(r, "config.json is not a JSON object: configuration unknown");
        cJSON_Delete(o);
        free(buf);
    } else {
        snprintf(p, sizeof p, "%s/command.txt", dir);
        if (!read_file(p, &command_txt, &len, 1 << 20, &e)) {
            found++;
            parse_command(command_txt, r->config);
        } else {
            add_gap(r, "no config.json or command.txt: the run's configuration is unknown");
        }
    }
    snprintf(p, sizeof p, "%s/machine.json", dir);
    if (!read_file(p, &buf, &len, 1 << 20, &e)) {
        found++;
        r->machine = cJSON_Parse(buf);
        if (!cJSON_IsArray(r->machine)) {
            cJSON_Delete(r->machine);
            r->machine = NULL;
            add_gap(r, "machine.json is not a JSON array: machine and build unknown");
        }
        free(buf);
    } else {
        add_gap(r, "no machine.json (a run from an older maec): machine and build unknown");
    }
    read_recon(dir, r);
    snprintf(p, sizeof p, "%s/reconstruction.png", dir);
    if (stat(p, &st) == 0) read_png_b64(p, &r->final_b64, r);
    found += r->nrecon > 0 || r->final_b64;
    detect_kind(r, command_txt);
    free(command_txt);
    if (!found) {
        report_run_free(r);
        return maec_fail(err, MAEC_EINVAL, "%s holds no maec run (no metrics.jsonl, config.json or recon/)", dir);
    }
    if (!strcmp(r->kind, "pretrain") && r->nrecon == 0 && !r->final_b64)
        add_gap(r, "no reconstruction pictures (recon/epoch-*.png)");
    if ((!strcmp(r->kind, "finetune") || !strcmp(r->kind, "linprobe")) && !r->final)
        add_gap(r, "no final result: the run stopped early or is still going");
    return 0;
}

void report_run_free(report_run *r)
{
    cJSON_Delete(r->rows);
    cJSON_Delete(r->final);
    cJSON_Delete(r->config);
    cJSON_Delete(r->machine);
    for (int i = 0; i < r->nrecon; i++) free(r->recon_b64[i]);
    free(r->recon_b64);
    free(r->recon_epoch);
    free(r->final_b64);
    for (int i = 0; i < r->ngaps; i++) free(r->gaps[i]);
    free(r->gaps);
    memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------ curves */

int report_points(const report_run *r, const char *ykey, const char *xkey, double **x, double **y)
{
    int cap = cJSON_GetArraySize(r->rows), n = 0;
    *x = *y = NULL;
    if (cap == 0) return 0;
    *x = malloc((size_t)cap * sizeof(double));
    *y = malloc((size_t)cap * sizeof(double));
    if (!*x || !*y) {
        free(*x), free(*y);
        *x = *y = NULL;
        return -1;
    }
    const cJSON *o;
    cJSON_ArrayForEach(o, r->rows) {
        if (!has_num(o, ykey) || !has_num(o, xkey)) continue;
        (*x)[n] = num(o, xkey);
        (*y)[n] = num(o, ykey);
        n++;
    }
    if (n == 0) {
        free(*x), free(*y);
        *x = *y = NULL;
    }
    return n;
}

const char *report_chart_x(const report_run *runs, int n, const char *ykey, const char *pref)
{
    for (int i = 0; i < n; i++) {
        const cJSON *o;
        cJSON_ArrayForEach(o, runs[i].rows)
            if (has_num(o, ykey) && !has_num(o, pref)) return strcmp(pref, "step") ? "step" : "epoch";
    }
    return pref;
}

/* keys that say nothing of what a run learned */
static int bookkeeping_key(const char *k)
{
    static const char *skip[] = {"output_dir", "resume", "threads", "num_workers", "log_every", "save_every",
                                 "keep", "recon_every", "recon_images", "report", "max_steps", NULL};
    for (int i = 0; skip[i]; i++)
        if (!strcmp(k, skip[i])) return 1;
    return 0;
}

static const char *cfg_value(const report_run *r, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->config, k);
    return cJSON_IsString(v) ? v->valuestring : "-";
}

/* the configuration keys that every run has and whose values differ
 * between the runs, at most max; none for runs of different kinds */
static int differing_keys(const report_run *runs, int n, const char **keys, int max)
{
    int nk = 0;
    for (int i = 1; i < n; i++)
        if (strcmp(runs[i].kind, runs[0].kind)) return 0;
    for (int i = 0; i < n && nk < max; i++) {
        const cJSON *e;
        cJSON_ArrayForEach(e, runs[i].config) {
            if (nk == max) break;
            const char *k = e->string;
            if (!k || bookkeeping_key(k)) continue;
            int seen = 0, differs = 0;
            for (int j = 0; j < nk; j++) seen |= !strcmp(keys[j], k);
            for (int j = 0; j < n && !seen; j++) seen |= !cJSON_GetObjectItemCaseSensitive(runs[j].config, k);
            for (int j = 1; j < n && !seen; j++) differs |= strcmp(cfg_value(&runs[0], k), cfg_value(&runs[j], k)) != 0;
            if (!seen && differs) keys[nk++] = k;
        }
    }
    return nk;
}

int report_labels(const report_run *runs, int n, char **labels, char **title)
{
    const char *keys[3];
    int nk = n > 1 ? differing_keys(runs, n, keys, 3) : 0;
    size_t tl = 64;
    for (int i = 0; i < n; i++) tl += strlen(runs[i].name) + 256;
    *title = calloc(1, tl);
    int ok = *title != NULL;
    for (int i = 0; i < n; i++) {
        char b[1024];
        size_t k = 0;
        b[0] = 0;
        for (int j = 0; j < nk; j++)
            k += (size_t)snprintf(b + k, k < sizeof b ? sizeof b - k : 0, "%s%s %.80s", j ? ", " : "", keys[j],
                                  cfg_value(&runs[i], keys[j]));
        if (!nk) snprintf(b, sizeof b, "%s", runs[i].name);
        labels[i] = strdup(b);
        ok &= labels[i] != NULL;
    }
    if (ok && nk) {
        size_t k = 0;
        for (int j = 0; j < nk; j++) {
            k += (size_t)snprintf(*title + k, tl - k, "%s%s ", j ? "; " : "", keys[j]);
            for (int i = 0; i < n && k < tl; i++)
                k += (size_t)snprintf(*title + k, tl - k, "%s%.80s", i ? " / " : "", cfg_value(&runs[i], keys[j]));
            if (k >= tl) break;
        }
    }
    return ok ? 0 : -1;
}

/* ------------------------------------------------------------ HTML */

#include "report_assets.h" /* report_css, report_js */

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...) MAEC_PRINTF(2, 3);
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (k > 0) sb_put(b, buf, (size_t)k < sizeof buf ? (size_t)k : sizeof buf - 1);
}

/* text in HTML */
static void sb_esc(sbuf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': sb_puts(b, "&lt;"); break;
        case '>': sb_puts(b, "&gt;"); break;
        case '&': sb_puts(b, "&amp;"); break;
        case '"': sb_puts(b, "&quot;"); break;
        default: sb_put(b, s, 1);
        }
    }
}

/* JSON inside <script>: no "</" may end the element early */
static void sb_json(sbuf *b, const char *s)
{
    for (; *s; s++) {
        if (s[0] == '<' && s[1] == '/') sb_puts(b, "<\\/"), s++;
        else sb_put(b, s, 1);
    }
}

typedef struct {
    const char *key, *title, *ylabel, *xpref;
    int log, pct, smooth;
} chart_def;

static const chart_def charts[] = {
    {"loss", "Training loss", "loss (mean of the logged interval)", "step", 1, 0, 1},
    {"lr", "Learning rate", "learning rate", "step", 1, 0, 0},
    {"images_per_s", "Throughput", "images / s", "step", 0, 0, 0},
    {"data_wait", "Waiting for data", "time waiting for data (%)", "step", 0, 1, 0},
    {"knn_top1", "k-NN top-1 (frozen encoder)", "k-NN top-1 on the test split (%)", "epoch", 0, 1, 0},
    {"test_top1", "Test top-1", "top-1 on the test split (%)", "epoch", 0, 1, 0},
};
#define NCHARTS ((int)(sizeof charts / sizeof charts[0]))

/* {"charts":[...], "runs":[{"label":..,"series":{key:{"x":[],"y":[]}}}]} */
static char *data_json(const report_run *runs, int n, char **labels)
{
    cJSON *o = cJSON_CreateObject(), *cs = cJSON_AddArrayToObject(o, "charts"), *rs = cJSON_AddArrayToObject(o, "runs");
    int ok = o && cs && rs;
    for (int c = 0; ok && c < NCHARTS; c++) {
        cJSON *ch = cJSON_CreateObject();
        ok = ch && cJSON_AddItemToArray(cs, ch);
        if (!ok) break;
        cJSON_AddStringToObject(ch, "key", charts[c].key);
        cJSON_AddStringToObject(ch, "title", charts[c].title);
        cJSON_AddStringToObject(ch, "ylabel", charts[c].ylabel);
        cJSON_AddStringToObject(ch, "xlabel", report_chart_x(runs, n, charts[c].key, charts[c].xpref));
        cJSON_AddBoolToObject(ch, "log", charts[c].log);
        cJSON_AddBoolToObject(ch, "pct", charts[c].pct);
        cJSON_AddBoolToObject(ch, "smooth", charts[c].smooth);
    }
    for (int i = 0; ok && i < n; i++) {
        cJSON *r = cJSON_CreateObject(), *se;
        ok = r && cJSON_AddItemToArray(rs, r);
        if (!ok) break;
        cJSON_AddStringToObject(r, "label", labels[i]);
        cJSON_AddStringToObject(r, "name", runs[i].name);
        ok = (se = cJSON_AddObjectToObject(r, "series")) != NULL;
        for (int c = 0; ok && c < NCHARTS; c++) {
            double *x, *y;
            int np = report_points(&runs[i], charts[c].key, report_chart_x(runs, n, charts[c].key, charts[c].xpref), &x, &y);
            ok = np >= 0;
            if (np > 0) {
                cJSON *s = cJSON_AddObjectToObject(se, charts[c].key);
                cJSON *xa = cJSON_CreateDoubleArray(x, np), *ya = cJSON_CreateDoubleArray(y, np);
                ok = s && xa && ya;
                if (ok) cJSON_AddItemToObject(s, "x", xa), cJSON_AddItemToObject(s, "y", ya);
                else cJSON_Delete(xa), cJSON_Delete(ya);
            }
            free(x), free(y);
        }
    }
    char *s = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

/* the figures a run ends with */
typedef struct {
    double last_step, last_epoch, last_loss, wall_s, ips_sum, wait_sum;
    int nips, nwait;
    double knn_last, knn_best, top1_last, top1_best, final_top1;
    int has_step, has_epoch, has_loss, has_knn, has_top1, has_final;
} run_summary;

static void summarize(const report_run *r, run_summary *s)
{
    memset(s, 0, sizeof *s);
    double seg = 0, prev = 0; /* elapsed_s starts again at 0 in a resumed session */
    const cJSON *o;
    cJSON_ArrayForEach(o, r->rows) {
        if (has_num(o, "step")) s->has_step = 1, s->last_step = num(o, "step");
        if (has_num(o, "epoch")) s->has_epoch = 1, s->last_epoch = num(o, "epoch");
        if (has_num(o, "loss")) s->has_loss = 1, s->last_loss = num(o, "loss");
        if (has_num(o, "images_per_s")) s->ips_sum += num(o, "images_per_s"), s->nips++;
        if (has_num(o, "data_wait")) s->wait_sum += num(o, "data_wait"), s->nwait++;
        if (has_num(o, "knn_top1")) {
            double v = num(o, "knn_top1");
            s->knn_best = s->has_knn && s->knn_best > v ? s->knn_best : v;
            s->knn_last = v, s->has_knn = 1;
        }
        if (has_num(o, "test_top1")) {
            double v = num(o, "test_top1");
            s->top1_best = s->has_top1 && s->top1_best > v ? s->top1_best : v;
            s->top1_last = v, s->has_top1 = 1;
        }
        if (has_num(o, "elapsed_s")) {
            double e = num(o, "elapsed_s");
            if (e < prev) seg += prev;
            prev = e;
        }
    }
    s->wall_s = seg + prev;
    if (r->final) {
        if (has_num(r->final, "test_top1")) s->has_final = 1, s->final_top1 = num(r->final, "test_top1");
        if (has_num(r->final, "elapsed_s") && num(r->final, "elapsed_s") >= prev) s->wall_s = seg + num(r->final, "elapsed_s");
    }
}

static void fmt_time(double s, char *b, size_t n)
{
    if (s < 120) snprintf(b, n, "%.1f s", s);
    else if (s < 7200) snprintf(b, n, "%.1f min", s / 60);
    else snprintf(b, n, "%.2f h", s / 3600);
}

static void results_table(sbuf *b, const report_run *runs, int n, char **labels)
{
    sb_puts(b, "<h2>Results</h2>\n<div class=\"scroll\"><table class=\"results\"><thead><tr><th>run</th><th>kind</th>"
               "<th>steps</th><th>epochs</th><th>last loss</th><th>k-NN top-1<br>last / best</th>"
               "<th>test top-1<br>last / best</th><th>final test top-1</th><th>images/s<br>(mean)</th>"
               "<th>data wait<br>(mean)</th><th>wall time</th></tr></thead><tbody>\n");
    for (int i = 0; i < n; i++) {
        run_summary s;
        summarize(&runs[i], &s);
        char t[64];
        sb_printf(b, "<tr><td><span class=\"sw\" data-run=\"%d\"></span>", i);
        sb_esc(b, labels[i]);
        sb_puts(b, "</td><td>");
        sb_esc(b, runs[i].kind);
        sb_puts(b, "</td>");
        if (s.has_step) sb_printf(b, "<td>%.0f</td>", s.last_step); else sb_puts(b, "<td>-</td>");
        if (s.has_epoch) sb_printf(b, "<td>%.4g</td>", s.last_epoch); else sb_puts(b, "<td>-</td>");
        if (s.has_loss) sb_printf(b, "<td>%.5g</td>", s.last_loss); else sb_puts(b, "<td>-</td>");
        if (s.has_knn) sb_printf(b, "<td>%.2f%% / %.2f%%</td>", 100 * s.knn_last, 100 * s.knn_best); else sb_puts(b, "<td>-</td>");
        if (s.has_top1) sb_printf(b, "<td>%.2f%% / %.2f%%</td>", 100 * s.top1_last, 100 * s.top1_best); else sb_puts(b, "<td>-</td>");
        if (s.has_final) sb_printf(b, "<td><b>%.2f%%</b></td>", 100 * s.final_top1); else sb_puts(b, "<td>-</td>");
        if (s.nips) sb_printf(b, "<td>%.0f</td>", s.ips_sum / s.nips); else sb_puts(b, "<td>-</td>");
        if (s.nwait) sb_printf(b, "<td>%.1f%%</td>", 100 * s.wait_sum / s.nwait); else sb_puts(b, "<td>-</td>");
        fmt_time(s.wall_s, t, sizeof t);
        sb_printf(b, "<td>%s</td></tr>\n", s.wall_s > 0 ? t : "-");
    }
    sb_puts(b, "</tbody></table></div>\n");
}

static void config_table(sbuf *b, const report_run *runs, int n, char **labels)
{
    sb_puts(b, "<h2>Configuration</h2>\n");
    if (n > 1) sb_puts(b, "<p class=\"note\">Rows where the runs differ are marked.</p>\n");
    sb_puts(b, "<div class=\"scroll\"><table class=\"config\"><thead><tr><th>setting</th>");
    for (int i = 0; i < n; i++) {
        sb_puts(b, "<th>");
        sb_esc(b, n > 1 ? labels[i] : runs[i].name);
        sb_puts(b, "</th>");
    }
    sb_puts(b, "</tr></thead><tbody>\n");
    /* the union of the keys, in the order they first appear */
    cJSON *seen = cJSON_CreateObject();
    for (int i = 0; seen && i < n; i++) {
        const cJSON *e;
        cJSON_ArrayForEach(e, runs[i].config) {
            if (!e->string || cJSON_GetObjectItemCaseSensitive(seen, e->string)) continue;
            cJSON_AddTrueToObject(seen, e->string);
            int differs = 0;
            for (int j = 1; j < n; j++) differs |= strcmp(cfg_value(&runs[0], e->string), cfg_value(&runs[j], e->string)) != 0;
            sb_printf(b, "<tr%s><td>", differs ? " class=\"differs\"" : "");
            sb_esc(b, e->string);
            sb_puts(b, "</td>");
            for (int j = 0; j < n; j++) {
                sb_puts(b, "<td>");
                sb_esc(b, cfg_value(&runs[j], e->string));
                sb_puts(b, "</td>");
            }
            sb_puts(b, "</tr>\n");
        }
    }
    cJSON_Delete(seen);
    sb_puts(b, "</tbody></table></div>\n");
}

static void machine_table(sbuf *b, const report_run *runs, int n, char **labels)
{
    sb_puts(b, "<h2>Machine and build</h2>\n<div class=\"scroll\"><table class=\"machine\"><thead><tr><th>run</th>"
               "<th>session</th><th>command</th><th>started (UTC)</th><th>maec</th><th>device</th><th>CPU</th>"
               "<th>threads</th><th>BLAS kernels</th><th>host</th></tr></thead><tbody>\n");
    static const char *keys[] = {"command", "started", "version", "device", "cpu", "threads", "blas", "host"};
    for (int i = 0; i < n; i++) {
        int k = 0;
        const cJSON *s;
        cJSON_ArrayForEach(s, runs[i].machine) {
            sb_puts(b, "<tr><td>");
            sb_esc(b, labels[i]);
            sb_printf(b, "</td><td>%d</td>", ++k);
            for (size_t j = 0; j < sizeof keys / sizeof keys[0]; j++) {
                char v[512];
                const cJSON *x = cJSON_GetObjectItemCaseSensitive(s, keys[j]);
                if (x) value_text(x, v, sizeof v);
                else snprintf(v, sizeof v, "-");
                sb_puts(b, "<td>");
                sb_esc(b, v);
                sb_puts(b, "</td>");
            }
            sb_puts(b, "</tr>\n");
        }
        if (!k) {
            sb_puts(b, "<tr><td>");
            sb_esc(b, labels[i]);
            sb_puts(b, "</td><td colspan=\"9\" class=\"gap\">not recorded (no machine.json)</td></tr>\n");
        }
    }
    sb_puts(b, "</tbody></table></div>\n");
}

static void recon_section(sbuf *b, const report_run *runs, int n, char **labels)
{
    int any = 0;
    for (int i = 0; i < n; i++) any |= runs[i].nrecon > 0 || runs[i].final_b64 != NULL;
    if (!any) return;
    sb_puts(b, "<h2>Reconstructions</h2>\n<p class=\"note\">Each row a test image: original | masked (hidden patches "
               "grey) | reconstruction | reconstruction with the visible patches pasted back. The slider goes "
               "through the epochs.</p>\n");
    for (int i = 0; i < n; i++) {
        const report_run *r = &runs[i];
        if (!r->nrecon && !r->final_b64) continue;
        sb_printf(b, "<div class=\"recon card\" data-run=\"%d\"><h3><span class=\"sw\" data-run=\"%d\"></span>", i, i);
        sb_esc(b, labels[i]);
        sb_puts(b, "</h3>\n");
        int count = r->nrecon + (r->final_b64 != NULL);
        if (count > 1)
            sb_printf(b, "<label>epoch <input type=\"range\" class=\"slider\" min=\"0\" max=\"%d\" value=\"%d\"> "
                         "<output class=\"ep\"></output></label>\n", count - 1, count - 1);
        for (int k = 0; k < count; k++) {
            char cap[64];
            if (k < r->nrecon) snprintf(cap, sizeof cap, "epoch %d", r->recon_epoch[k]);
            else snprintf(cap, sizeof cap, "final model");
            sb_printf(b, "<figure class=\"frame\"%s data-caption=\"%s\"><img class=\"recon-img\" alt=\"reconstructions, %s\" src=\"data:image/png;base64,",
                      k == count - 1 ? "" : " hidden", cap, cap);
            sb_puts(b, k < r->nrecon ? r->recon_b64[k] : r->final_b64);
            sb_printf(b, "\"><figcaption>%s</figcaption></figure>\n", cap);
        }
        sb_puts(b, "</div>\n");
    }
}

int report_write(const report_run *runs, int n, const char *path, maec_error *err)
{
    char **labels = calloc((size_t)(n ? n : 1), sizeof *labels), *title = NULL, *js = NULL;
    sbuf b = {0};
    int rc = 0;
    if (!labels || report_labels(runs, n, labels, &title) || !(js = data_json(runs, n, labels))) {
        rc = maec_fail(err, MAEC_ENOMEM, "out of memory");
        goto out;
    }
    char when[64];
    time_t now = time(NULL);
    struct tm tmv;
    strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", gmtime_r(&now, &tmv));
    sb_puts(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
                "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
                "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n"
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>maec report: ");
    for (int i = 0; i < n; i++) {
        if (i) sb_puts(&b, ", ");
        sb_esc(&b, runs[i].name);
    }
    sb_puts(&b, "</title>\n<style>");
    sb_puts(&b, report_css);
    sb_puts(&b, "</style>\n</head><body>\n<header><h1>maec report</h1><p>");
    for (int i = 0; i < n; i++) {
        sb_printf(&b, "%s<span class=\"sw\" data-run=\"%d\"></span><b>", i ? " &nbsp; " : "", i);
        sb_esc(&b, labels[i]);
        sb_puts(&b, "</b> <span class=\"dim\">");
        sb_esc(&b, runs[i].kind);
        sb_puts(&b, " · ");
        sb_esc(&b, runs[i].dir);
        sb_puts(&b, "</span>");
    }
    sb_puts(&b, "</p>");
    if (title[0]) {
        sb_puts(&b, "<p class=\"sweep\">");
        sb_esc(&b, title);
        sb_puts(&b, "</p>");
    }
    sb_printf(&b, "<p class=\"dim\">written %s by maec %s</p></header>\n", when, MAEC_VERSION);
    int ngaps = 0;
    for (int i = 0; i < n; i++) ngaps += runs[i].ngaps;
    if (ngaps) {
        sb_puts(&b, "<section class=\"gaps\"><h2>Missing or damaged</h2><ul>\n");
        for (int i = 0; i < n; i++)
            for (int g = 0; g < runs[i].ngaps; g++) {
                sb_puts(&b, "<li><b>");
                sb_esc(&b, runs[i].name);
                sb_puts(&b, "</b>: ");
                sb_esc(&b, runs[i].gaps[g]);
                sb_puts(&b, "</li>\n");
            }
        sb_puts(&b, "</ul></section>\n");
    }
    results_table(&b, runs, n, labels);
    sb_puts(&b, "<h2>Curves</h2>\n<p class=\"note\">Hover over a chart for its values. Training loss: the raw "
                "logged values (pale) and an exponential moving average (weight 0.6, as TensorBoard's "
                "smoothing).</p>\n<div id=\"charts\" class=\"charts\"></div>\n<noscript><p class=\"gap\">The "
                "charts are drawn by the page's script: allow it to see them.</p></noscript>\n");
    recon_section(&b, runs, n, labels);
    config_table(&b, runs, n, labels);
    machine_table(&b, runs, n, labels);
    sb_puts(&b, "<pre id=\"selftest\" hidden></pre>\n<script type=\"application/json\" id=\"maec-data\">");
    sb_json(&b, js);
    sb_puts(&b, "</script>\n<script>");
    sb_puts(&b, report_js);
    sb_puts(&b, "</script>\n</body></html>\n");
    if (b.oom) {
        rc = maec_fail(err, MAEC_ENOMEM, "out of memory");
        goto out;
    }
    atomic_file af;
    if ((rc = atomic_open(&af, path, err))) goto out;
    atomic_write(&af, b.p, b.n);
    rc = atomic_commit(&af, err);
out:
    for (int i = 0; labels && i < n; i++) free(labels[i]);
    free(labels);
    free(title);
    free(js);
    free(b.p);
    return rc;
}
