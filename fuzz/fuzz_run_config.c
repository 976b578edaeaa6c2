/* run_cfg_from_json (a run's config.json, and the run state inside every
 * checkpoint) on arbitrary text. What it accepts must be a run the trainer
 * can carry out (sizes and counts in the ranges the flags allow: no zero
 * batch, no zero log interval) and must survive run_cfg_to_json and back
 * unchanged, which is what --config and --resume rely on. The text is also
 * read as a model's "maec_data" normalization (maec_parse_norm_json). */
#include "fuzz.h"
#include "cli/run.h"
#include "maec_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *js = malloc(size + 1);
    FUZZ_ASSERT(js != NULL, "out of memory");
    memcpy(js, data, size);
    js[size] = 0;
    /* the same text as a model's "maec_data" normalization */
    float mean[3], sd[3];
    if (maec_parse_norm_json(js, 3, mean, sd) == 0)
        for (int c = 0; c < 3; c++) FUZZ_ASSERT(sd[c] > 0, "std %g accepted", (double)sd[c]);
    run_cfg rc;
    maec_error err = {0};
    int r = run_cfg_from_json(&rc, js, &err);
    free(js);
    fuzz_check_result(r, &err, "run_cfg_from_json");
    if (r) return 0;
    FUZZ_ASSERT(rc.epochs >= 1 && rc.batch_size >= 1 && rc.accum_iter >= 1, "epochs %d batch %d accum %d",
                rc.epochs, rc.batch_size, rc.accum_iter);
    FUZZ_ASSERT(rc.log_every >= 1 && rc.keep >= 1 && rc.save_every >= 0 && rc.recon_every >= 0,
                "log_every %d keep %d save_every %d recon_every %d", rc.log_every, rc.keep, rc.save_every,
                rc.recon_every);
    FUZZ_ASSERT(rc.num_workers >= 0 && rc.recon_images >= 0 && rc.max_steps >= 0, "workers %d images %d steps %lld",
                rc.num_workers, rc.recon_images, rc.max_steps);
    char *out = run_cfg_to_json(&rc);
    FUZZ_ASSERT(out != NULL, "run_cfg_to_json failed");
    run_cfg back;
    r = run_cfg_from_json(&back, out, &err);
    FUZZ_ASSERT(r == 0, "its own JSON is refused: %s\n%s", err.msg, out);
    FUZZ_ASSERT(!memcmp(&rc, &back, sizeof rc), "JSON round trip changes the run:\n%s", out);
    free(out);
    return 0;
}
