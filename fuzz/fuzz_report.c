/* The run report's reader (report_run_load) on an arbitrary run folder: the
 * input is metrics.jsonl, then, after a line "--config--", config.json, and
 * after "--machine--", machine.json. Whatever the files hold, the folder
 * loads (gaps named) and the page is written, or a clean error comes back;
 * every curve point is a record's numbers. */
#include "fuzz.h"
#include "report.h"

static void put(const char *name, const uint8_t *d, size_t n)
{
    fuzz_write(fuzz_path(1, name), d, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *dir = fuzz_path(0, "run");
    mkdir(dir, 0700);
    char p[600];
    const char *names[3] = {"metrics.jsonl", "config.json", "machine.json"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "run/%s", names[i]);
        unlink(fuzz_path(1, p));
    }
    size_t first, rest_n, second, third_n;
    const uint8_t *rest, *third;
    if (fuzz_split(data, size, "\n--config--\n", &first, &rest, &rest_n)) {
        put("run/metrics.jsonl", data, first);
        if (fuzz_split(rest, rest_n, "\n--machine--\n", &second, &third, &third_n)) {
            put("run/config.json", rest, second);
            put("run/machine.json", third, third_n);
        } else {
            put("run/config.json", rest, rest_n);
        }
    } else {
        put("run/metrics.jsonl", data, size);
    }
    report_run r;
    maec_error err = {0};
    int rc = report_run_load(dir, &r, &err);
    fuzz_check_result(rc, &err, "report_run_load");
    if (rc) return 0;
    double *x, *y;
    int n = report_points(&r, "loss", report_chart_x(&r, 1, "loss", "step"), &x, &y);
    FUZZ_ASSERT(n >= 0 && n <= cJSON_GetArraySize(r.rows), "%d points of %d records", n, cJSON_GetArraySize(r.rows));
    free(x), free(y);
    rc = report_write(&r, 1, fuzz_path(2, "report.html"), &err);
    fuzz_check_result(rc, &err, "report_write");
    report_run_free(&r);
    return 0;
}
