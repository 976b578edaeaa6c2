/* The run report's data extraction (src/report.c): a curve's points are the
 * metrics file's records, exactly; the final record apart; a cut-short or
 * broken line skipped and named; the x of a chart; the legend names of a
 * sweep; base64; the written page holds no way out to the network. */
#define _POSIX_C_SOURCE 200809L
#include <string.h>
#include <sys/stat.h>

#include "io/png.h"
#include "report.h"
#include "test.h"
#include "util.h"

static void put(const char *dir, const char *name, const char *text)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    test_write_bytes(p, text, strlen(text));
}

static int has_gap(const report_run *r, const char *part)
{
    for (int i = 0; i < r->ngaps; i++)
        if (strstr(r->gaps[i], part)) return 1;
    return 0;
}

static char *slurp(const char *path)
{
    char *s = NULL;
    size_t n;
    maec_error e;
    if (read_file(path, &s, &n, 1 << 26, &e)) return NULL;
    return s;
}

/* a pretraining run's folder: config.json with the given mask ratio */
static void make_pretrain_dir(const char *dir, const char *ratio)
{
    mkdir(dir, 0755);
    char cfg[512];
    snprintf(cfg, sizeof cfg,
             "{\"preset\":\"test-tiny\",\"model\":{\"patch_size\":4,\"mask_ratio\":%s,\"norm_pix_loss\":false},"
             "\"output_dir\":\"%s\",\"blr\":0.001,\"seed\":0}\n", ratio, dir);
    put(dir, "config.json", cfg);
    put(dir, "metrics.jsonl",
        "{\"step\":1,\"epoch\":0.5,\"loss\":1.5,\"lr\":1e-4,\"images_per_s\":100,\"data_wait\":0.1,\"elapsed_s\":1}\n"
        "{\"step\":2,\"epoch\":1,\"loss\":1.25,\"lr\":2e-4,\"images_per_s\":110,\"data_wait\":0.05,\"elapsed_s\":2}\n");
}

int main(void)
{
    if (test_make_dir("report")) return 1;
    maec_error err = {0};

    /* base64: RFC 4648's test vectors */
    {
        const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
        const char *want[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
        for (int i = 0; i < 7; i++) {
            char *b = report_base64((const unsigned char *)in[i], strlen(in[i]));
            CHECK(b && !strcmp(b, want[i]), "base64(%s) = %s, want %s", in[i], b ? b : "NULL", want[i]);
            free(b);
        }
    }

    /* 1. a pretraining run: metrics with loss rows, k-NN rows, a broken line
     * in the middle and a last line cut short, as kill -9 leaves it */
    const char *a = test_path("a");
    mkdir(a, 0755);
    put(a, "config.json", "{\"preset\":\"test-tiny\",\"model\":{\"mask_ratio\":0.75,\"depth\":2},\"blr\":0.0015}\n");
    const double loss[5] = {2.5, 2.25, 1.875, 1.5, 1.3125}, lr[5] = {1e-5, 2e-5, 3e-5, 2.5e-5, 1e-5};
    char metrics[4096];
    size_t k = 0;
    for (int i = 0; i < 5; i++) {
        k += (size_t)snprintf(metrics + k, sizeof metrics - k,
                              "{\"step\":%d,\"epoch\":%.4f,\"loss\":%.9g,\"lr\":%.6g,\"images_per_s\":%d,\"data_wait\":0.125,"
                              "\"elapsed_s\":%d}\n", 2 * (i + 1), 0.4 * (i + 1), loss[i], lr[i], 1000 + i, i + 1);
        if (i == 1) k += (size_t)snprintf(metrics + k, sizeof metrics - k, "not json\n");
        if (i == 2 || i == 4)
            k += (size_t)snprintf(metrics + k, sizeof metrics - k, "{\"step\":%d,\"epoch\":%d,\"knn_top1\":0.%d,\"knn_s\":1}\n",
                                  2 * (i + 1), i / 2, 5 + i);
    }
    k += (size_t)snprintf(metrics + k, sizeof metrics - k, "{\"step\":12,\"epoch\":4.8,\"lo");
    put(a, "metrics.jsonl", metrics);
    mkdir(test_path("a/recon"), 0755);
    unsigned char px[4 * 4] = {0, 64, 128, 255};
    maec_png_write(test_path("a/recon/epoch-0002.png"), px, 4, 4, 1, &err);
    maec_png_write(test_path("a/recon/epoch-0001.png"), px, 4, 4, 1, &err);
    put(a, "recon/epoch-0003.png", "not a png");

    report_run r;
    int rc = report_run_load(a, &r, &err);
    CHECK(rc == 0, "report_run_load: %s", err.msg);
    if (!rc) {
        CHECK(!strcmp(r.kind, "pretrain"), "kind %s, want pretrain", r.kind);
        CHECK(cJSON_GetArraySize(r.rows) == 7, "%d records, want 7 (5 loss + 2 k-NN)", cJSON_GetArraySize(r.rows));
        double *x, *y;
        int n = report_points(&r, "loss", "step", &x, &y);
        CHECK(n == 5, "loss: %d points, want the 5 loss records", n);
        for (int i = 0; i < n && i < 5; i++) /* exact: the file's own numbers */
            CHECK(x[i] == 2 * (i + 1) && y[i] == loss[i], "loss point %d = (%g, %g), want (%d, %g)", i, x[i], y[i],
                  2 * (i + 1), loss[i]);
        free(x), free(y);
        n = report_points(&r, "lr", "step", &x, &y);
        CHECK(n == 5, "lr: %d points, want 5", n);
        for (int i = 0; i < n && i < 5; i++) CHECK(y[i] == lr[i], "lr point %d = %g, want %g (exact)", i, y[i], lr[i]);
        free(x), free(y);
        n = report_points(&r, "knn_top1", "epoch", &x, &y);
        CHECK(n == 2 && x[0] == 1 && y[0] == 0.7 && x[1] == 2 && y[1] == 0.9,
              "knn: %d points, want (1, 0.7), (2, 0.9)", n);
        free(x), free(y);
        n = report_points(&r, "test_top1", "epoch", &x, &y);
        CHECK(n == 0 && !x && !y, "test_top1: %d points, want none", n);
        CHECK(!strcmp(report_chart_x(&r, 1, "loss", "step"), "step"), "loss is drawn against the step");
        CHECK(has_gap(&r, "last line (9) is cut short"), "the cut-short last line is not named");
        CHECK(has_gap(&r, "1 line is not JSON") && has_gap(&r, "line 3"), "the broken line 3 is not named");
        CHECK(has_gap(&r, "no machine.json"), "the missing machine.json is not named");
        CHECK(has_gap(&r, "epoch-0003.png is not a PNG"), "the broken picture is not named");
        CHECK(r.nrecon == 2 && r.recon_epoch[0] == 1 && r.recon_epoch[1] == 2, "%d pictures, want epochs 1, 2", r.nrecon);
        const cJSON *mr = cJSON_GetObjectItemCaseSensitive(r.config, "mask_ratio");
        CHECK(cJSON_IsString(mr) && !strcmp(mr->valuestring, "0.75"), "config mask_ratio not read from the model");
        report_run_free(&r);
    }

    /* 2. a linear probe: records per epoch, no step; the final record apart */
    const char *b = test_path("b");
    mkdir(b, 0755);
    put(b, "metrics.jsonl",
        "{\"epoch\":1,\"loss\":2.0,\"lr\":0.1,\"test_top1\":0.5,\"elapsed_s\":1}\n"
        "{\"epoch\":2,\"loss\":1.5,\"lr\":0.05,\"elapsed_s\":2}\n"
        "{\"epoch\":3,\"loss\":1.0,\"lr\":0,\"test_top1\":0.625,\"elapsed_s\":3}\n"
        "{\"final\":true,\"test_top1\":0.625,\"epochs\":3,\"feature_s\":0.5,\"elapsed_s\":3.5}\n");
    rc = report_run_load(b, &r, &err);
    CHECK(rc == 0, "load the probe: %s", err.msg);
    if (!rc) {
        CHECK(!strcmp(r.kind, "linprobe"), "kind %s, want linprobe", r.kind);
        CHECK(r.final && cJSON_GetArraySize(r.rows) == 3, "the final record is not kept apart");
        CHECK(!strcmp(report_chart_x(&r, 1, "loss", "step"), "epoch"), "a probe's loss is drawn against the epoch");
        double *x, *y;
        int n = report_points(&r, "test_top1", "epoch", &x, &y);
        CHECK(n == 2 && x[1] == 3 && y[1] == 0.625, "probe top-1: %d points", n);
        free(x), free(y);
        CHECK(has_gap(&r, "configuration is unknown"), "the missing configuration is not named");
        /* pretraining and probe side by side: loss against the epoch for both */
        report_run two[2];
        if (!report_run_load(a, &two[0], &err)) {
            two[1] = r;
            CHECK(!strcmp(report_chart_x(two, 2, "loss", "step"), "epoch"), "mixed kinds: loss not against the epoch");
            CHECK(!report_write(two, 2, test_path("mixed.html"), &err), "mixed report: %s", err.msg);
            char *labels[2], *title;
            CHECK(report_labels(two, 2, labels, &title) == 0 && !strcmp(labels[0], "a") && !strcmp(labels[1], "b") &&
                      !title[0], "runs of different kinds are not named by their folders: %s | %s", labels[0], labels[1]);
            free(labels[0]), free(labels[1]), free(title);
            report_run_free(&two[0]);
        }
        report_run_free(&r);
    }

    /* 3. a mask-ratio sweep: the legend names what differs */
    const char *ratios[3] = {"0.5", "0.75", "0.9"};
    report_run sw[3];
    int loaded = 0;
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof name, "mr%d", i);
        make_pretrain_dir(test_path(name), ratios[i]);
        if (!report_run_load(test_path(name), &sw[i], &err)) loaded++;
    }
    CHECK(loaded == 3, "sweep runs not loaded: %s", err.msg);
    if (loaded == 3) {
        char *labels[3], *title;
        CHECK(report_labels(sw, 3, labels, &title) == 0, "report_labels failed");
        CHECK(!strcmp(labels[0], "mask_ratio 0.5") && !strcmp(labels[1], "mask_ratio 0.75") &&
                  !strcmp(labels[2], "mask_ratio 0.9"), "labels %s | %s | %s", labels[0], labels[1], labels[2]);
        CHECK(!strcmp(title, "mask_ratio 0.5 / 0.75 / 0.9"), "sweep title '%s'", title);
        for (int i = 0; i < 3; i++) free(labels[i]);
        free(title);
        const char *out = test_path("sweep.html");
        CHECK(report_write(sw, 3, out, &err) == 0, "report_write: %s", err.msg);
        char *html = slurp(out);
        CHECK(html && strstr(html, "default-src 'none'"), "no Content-Security-Policy in the page");
        CHECK(html && !strstr(html, "src=\"http") && !strstr(html, "href=") && !strstr(html, "url(") &&
                  !strstr(html, "fetch(") && !strstr(html, "XMLHttpRequest"),
              "the page refers to something outside itself");
        CHECK(html && strstr(html, "\"label\":\"mask_ratio 0.9\""), "the sweep's runs are not in the page's data");
        free(html);
        for (int i = 0; i < 3; i++) report_run_free(&sw[i]);
    }

    /* 4. a value that would close the script element is escaped */
    const char *c = test_path("c");
    mkdir(c, 0755);
    put(c, "metrics.jsonl", "{\"step\":1,\"loss\":1}\n");
    put(c, "config.json", "{\"data_path\":\"</script><script>alert(1)</script>\"}\n");
    if (!report_run_load(c, &r, &err)) {
        CHECK(!report_write(&r, 1, test_path("c.html"), &err), "report_write: %s", err.msg);
        char *html = slurp(test_path("c.html"));
        CHECK(html && !strstr(html, "<script>alert"), "a configuration value was written into the page as markup");
        free(html);
        report_run_free(&r);
    } else {
        CHECK(0, "load c: %s", err.msg);
    }

    /* 5. bad folders: an error each, with the path */
    CHECK(report_run_load(test_path("none"), &r, &err) != 0 && strstr(err.msg, "none"), "a missing folder loads");
    mkdir(test_path("empty"), 0755);
    CHECK(report_run_load(test_path("empty"), &r, &err) != 0 && strstr(err.msg, "holds no maec run"),
          "an empty folder loads: %s", err.msg);
    CHECK(report_run_load(test_path("a/config.json"), &r, &err) != 0 && strstr(err.msg, "not a run folder"),
          "a file loads as a run folder");
    TEST_END();
}
