/* The run report (maec report, --report): what a run folder holds, read
 * into curves, tables and pictures, and written as one self-contained HTML
 * file (no network, pictures embedded, charts drawn by its own script). */
#ifndef MAEC_REPORT_H
#define MAEC_REPORT_H
#include <stddef.h>
#include <cjson/cJSON.h>

#include "maec.h"

typedef struct {
    char dir[1024];
    char name[256];      /* the folder's last component */
    char kind[16];       /* pretrain, finetune, linprobe, knn, or "run" when unknown */
    cJSON *rows;         /* metrics.jsonl: the records (objects) in file order, the final one apart */
    cJSON *final;        /* the {"final":true,...} record, or NULL */
    cJSON *config;       /* flat object, key -> string: config.json, or finetune's command.txt */
    cJSON *machine;      /* machine.json: an array of sessions, or NULL */
    int nrecon;          /* recon/epoch-*.png, by epoch */
    int *recon_epoch;
    char **recon_b64;    /* each picture as base64 */
    char *final_b64;     /* reconstruction.png as base64, or NULL */
    int ngaps;
    char **gaps;         /* what is missing or damaged, one sentence each */
} report_run;

/* Read a run folder. A missing or cut-short metrics file, a missing config
 * or machine file, unreadable pictures: noted in r->gaps, not errors. An
 * error: the folder cannot be read, or holds nothing maec writes. */
int report_run_load(const char *dir, report_run *r, maec_error *err);
void report_run_free(report_run *r);

/* The points of a curve: every record (the final one aside) that holds
 * both a number ykey and a number xkey, in file order; x and y malloc'd
 * (NULL when n is 0). Returns n, or -1 when out of memory. */
int report_points(const report_run *r, const char *ykey, const char *xkey, double **x, double **y);

/* The x of a chart of ykey over several runs: pref ("step" or "epoch")
 * when every record holding ykey has it, else the other one. */
const char *report_chart_x(const report_run *runs, int n, const char *ykey, const char *pref);

/* The runs' names in a legend: what differs between their configurations
 * ("mask_ratio 0.75"), else their folder names. labels[i] malloc'd; *title
 * (malloc'd) names the keys that differ, e.g. "mask_ratio 0.5 / 0.75 / 0.9",
 * or is "" when nothing does. */
int report_labels(const report_run *runs, int n, char **labels, char **title);

/* The HTML report of n runs, written atomically to path. */
int report_write(const report_run *runs, int n, const char *path, maec_error *err);

/* base64 of n bytes (malloc'd, NUL-terminated), NULL when out of memory */
char *report_base64(const unsigned char *data, size_t n);
#endif
