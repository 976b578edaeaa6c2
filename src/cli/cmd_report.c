/* maec report: a run's (or several runs') self-contained HTML report, and
 * what the training commands call for it: the session record
 * (machine.json) and --report's rewrite at each epoch's end. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "report.h"
#include "util.h"

/* the CPU's name from /proc/cpuinfo, or "" */
static void cpu_name(char *buf, size_t n)
{
    buf[0] = 0;
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *c = strchr(line, ':');
        if (strncmp(line, "model name", 10) || !c) continue;
        c++;
        while (*c == ' ') c++;
        c[strcspn(c, "\n")] = 0;
        snprintf(buf, n, "%s", c);
        break;
    }
    fclose(f);
}

void cli_report_session(const char *dir, const char *command, int fresh)
{
    char path[2100], *old = NULL;
    size_t len;
    maec_error err = {0};
    snprintf(path, sizeof path, "%s/machine.json", dir);
    cJSON *a = fresh || read_file(path, &old, &len, 1 << 20, &err) ? NULL : cJSON_Parse(old);
    free(old);
    if (!cJSON_IsArray(a)) {
        cJSON_Delete(a);
        a = cJSON_CreateArray();
    }
    cJSON *s = cJSON_CreateObject();
    if (!a || !s || !cJSON_AddItemToArray(a, s)) {
        cJSON_Delete(a);
        cJSON_Delete(s);
        return;
    }
    char cpu[256], host[256] = "", when[64];
    time_t now = time(NULL);
    struct tm tmv;
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tmv));
    cpu_name(cpu, sizeof cpu);
    gethostname(host, sizeof host - 1);
    const char *ct = getenv("OPENBLAS_CORETYPE");
    char blas[128];
    snprintf(blas, sizeof blas, "OpenBLAS %s%s%s", maec_blas_core(), ct ? ", OPENBLAS_CORETYPE=" : "", ct ? ct : "");
    cJSON_AddStringToObject(s, "command", command);
    cJSON_AddStringToObject(s, "started", when);
    cJSON_AddStringToObject(s, "version", MAEC_VERSION);
    char dev[256];
    maec_device_describe(dev, sizeof dev);
    cJSON_AddStringToObject(s, "device", strcmp(dev, "cpu") ? dev : "CPU");
    cJSON_AddStringToObject(s, "cpu", cpu);
    cJSON_AddNumberToObject(s, "threads", omp_get_max_threads());
    cJSON_AddStringToObject(s, "blas", blas);
    cJSON_AddStringToObject(s, "host", host);
    char *js = cJSON_Print(a);
    cJSON_Delete(a);
    atomic_file af;
    /* the record helps the report; a run goes on without it */
    if (js && !atomic_open(&af, path, &err)) {
        atomic_write(&af, js, strlen(js));
        atomic_write(&af, "\n", 1);
        atomic_commit(&af, &err);
    }
    free(js);
}

int cli_report_update(const char *dir)
{
    report_run r;
    maec_error err = {0};
    char out[2100];
    snprintf(out, sizeof out, "%s/report.html", dir);
    int rc = report_run_load(dir, &r, &err);
    if (!rc) {
        rc = report_write(&r, 1, out, &err);
        report_run_free(&r);
    }
    if (rc) fprintf(stderr, "maec: warning: report %s not written: %s\n", out, err.msg);
    return rc;
}

int cmd_report(int argc, char **argv)
{
    const char *out = NULL;
    char *pos[64];
    int npos = 0;
    /* -o is --out, as the usage line says */
    char **args = malloc((size_t)(argc + 1) * sizeof *args);
    if (!args) {
        cli_error("report: out of memory");
        return 1;
    }
    for (int i = 0; i < argc; i++) args[i] = strcmp(argv[i], "-o") ? argv[i] : "--out";
    cli_opt opts[] = {
        {"out", OPT_STR, &out, "the HTML file (-o; default RUN/report.html for one run, report.html for several)", 1, 0, 0},
    };
    int r = cli_parse("report", "RUN [RUN ...] [-o report.html]", argc, args, opts, 1, pos, 64, &npos);
    free(args);
    if (r) return r < 0 ? 2 : 0;
    if (npos < 1) {
        cli_error("report: give one or more run folders (maec report RUN [RUN ...] [-o report.html])");
        return 2;
    }
    report_run *runs = calloc((size_t)npos, sizeof *runs);
    if (!runs) {
        cli_error("report: out of memory");
        return 1;
    }
    maec_error err = {0};
    int n = 0, status = 0;
    for (; n < npos; n++)
        if (report_run_load(pos[n], &runs[n], &err)) {
            cli_error("report: %s", err.msg);
            status = 1;
            break;
        }
    char def[2100];
    if (!out) {
        if (npos == 1) snprintf(def, sizeof def, "%s/report.html", pos[0]);
        else snprintf(def, sizeof def, "report.html");
        out = def;
    }
    if (!status && report_write(runs, n, out, &err)) {
        cli_error("report: %s", err.msg);
        status = 1;
    }
    if (!status) {
        int gaps = 0;
        for (int i = 0; i < n; i++) gaps += runs[i].ngaps;
        printf("report: %s (%d run%s%s)\n", out, n, n > 1 ? "s" : "", gaps ? "; see its 'Missing or damaged' list" : "");
    }
    for (int i = 0; i < n; i++) report_run_free(&runs[i]);
    free(runs);
    return status;
}
