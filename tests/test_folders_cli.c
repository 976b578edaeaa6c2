/* Photo folders through the maec command: a folder of class folders without
 * an evaluation split is refused by every command that evaluates (with the
 * layouts and choices named), --val-split holds out a seeded share,
 * --eval-path takes another folder whose classes are mapped by name, and
 * the log says which images were used for what; each refusal is one
 * line and a non-zero exit, before any training. The images (JPEG and PNG,
 * grey and RGB, of several sizes and shapes) are made here. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "maec.h"
#include "photos.h"
#include "test.h"

/* runs the maec command with args (output to a file); its exit status, its output in out */
static int run(const char *args, char *out, size_t n)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "OMP_WAIT_POLICY=PASSIVE %s %s > %s 2>&1", test_maec_bin(), args, test_path("out.txt"));
    int st = system(cmd);
    out[0] = 0;
    FILE *f = fopen(test_path("out.txt"), "r");
    if (f) {
        size_t k = fread(out, 1, n - 1, f);
        out[k] = 0;
        fclose(f);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void make_folders(void)
{
    const char *cls[3] = {"apple", "bird", "car"};
    const int sizes[4][2] = {{40, 30}, {30, 40}, {24, 24}, {64, 20}};
    char p[512];
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 12; i++) {
            const char *ext = i % 3 == 0 ? "jpg" : i % 3 == 1 ? "PNG" : "jpeg";
            snprintf(p, sizeof p, "%s/flat/%s/%s%02d.%s", test_dir, cls[c], i % 4 == 3 ? "sub/" : "", i, ext);
            photo_write(p, sizes[i % 4][0], sizes[i % 4][1], i % 5 == 0 ? 1 : 3, i, 60 + 60 * c);
        }
    /* an evaluation folder without bird, and one with a class of its own */
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/ev/apple/%d.png", test_dir, i);
        photo_write(p, 32, 32, 3, 100 + i, 60);
        snprintf(p, sizeof p, "%s/ev/car/%d.jpg", test_dir, i);
        photo_write(p, 32, 32, 3, 200 + i, 180);
        snprintf(p, sizeof p, "%s/evz/apple/%d.png", test_dir, i);
        photo_write(p, 32, 32, 3, 300 + i, 60);
        snprintf(p, sizeof p, "%s/evz/zebra/%d.png", test_dir, i);
        photo_write(p, 32, 32, 3, 400 + i, 90);
    }
}

int main(void)
{
    if (test_make_dir("folders")) return 1;
    make_folders();
    static char out[1 << 16];
    char a[2048];
    const char *M = "--model test-tiny --threads 1 --num-workers 1";
    /* 1. no evaluation split: refused, the layouts and choices named */
    snprintf(a, sizeof a, "knn %s --data-path %s/flat", M, test_dir);
    int rc = run(a, out, sizeof out);
    CHECK(rc != 0 && strstr(out, "no evaluation split") && strstr(out, "/train/<class>") && strstr(out, "--eval-path") &&
              strstr(out, "--val-split"),
          "knn on a flat folder: exit %d, %s", rc, out);
    printf("  flat folder, knn -> %s", out);
    snprintf(a, sizeof a, "linprobe %s --data-path %s/flat --output-dir %s/lp --epochs 1 --warmup-epochs 0", M, test_dir,
             test_dir);
    rc = run(a, out, sizeof out);
    CHECK(rc != 0 && strstr(out, "no evaluation split"), "linprobe on a flat folder: exit %d, %s", rc, out);
    snprintf(a, sizeof a, "pretrain %s --data-path %s/flat --output-dir %s/pre --knn-every 1 --batch-size 8 --epochs 1 --warmup-epochs 0",
             M, test_dir, test_dir);
    rc = run(a, out, sizeof out);
    snprintf(a, sizeof a, "%s/pre/model.safetensors", test_dir);
    FILE *f = fopen(a, "r");
    CHECK(rc != 0 && strstr(out, "--knn-every") && strstr(out, "no evaluation split") && !f,
          "pretrain --knn-every on a flat folder: exit %d, trained %s: %s", rc, f ? "yes" : "no", out);
    if (f) fclose(f);
    /* pretraining alone needs no evaluation split */
    snprintf(a, sizeof a,
             "pretrain %s --data-path %s/flat --output-dir %s/pre2 --batch-size 8 --epochs 1 --warmup-epochs 0 "
             "--recon-images 2",
             M, test_dir, test_dir);
    rc = run(a, out, sizeof out);
    CHECK(rc == 0, "pretrain on a flat folder without k-NN: exit %d, %s", rc, out);
    /* 2. --val-split: 36 images, a quarter held out */
    snprintf(a, sizeof a, "knn %s --data-path %s/flat --val-split 0.25", M, test_dir);
    rc = run(a, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "27 training images") && strstr(out, "9 evaluation images from a seeded 0.25 share"),
          "knn --val-split 0.25: exit %d, %s", rc, out);
    static char first[1 << 16];
    snprintf(first, sizeof first, "%s", out);
    rc = run(a, out, sizeof out);
    CHECK(rc == 0 && !strcmp(first, out), "knn --val-split twice: different output");
    snprintf(a, sizeof a,
             "pretrain %s --data-path %s/flat --output-dir %s/pre3 --knn-every 1 --val-split 0.25 --batch-size 8 "
             "--epochs 1 --warmup-epochs 0 --recon-images 0",
             M, test_dir, test_dir);
    rc = run(a, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "27 training images") && strstr(out, "k-NN top-1"),
          "pretrain --knn-every --val-split: exit %d, %s", rc, out);
    /* 3. --eval-path: classes by name; a class of its own is named */
    snprintf(a, sizeof a, "knn %s --data-path %s/flat --eval-path %s/ev", M, test_dir, test_dir);
    rc = run(a, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "36 training images") && strstr(out, "8 evaluation images from"),
          "knn --eval-path: exit %d, %s", rc, out);
    snprintf(a, sizeof a, "knn %s --data-path %s/flat --eval-path %s/evz", M, test_dir, test_dir);
    rc = run(a, out, sizeof out);
    CHECK(rc != 0 && strstr(out, "'zebra'"), "knn --eval-path with a class of its own: exit %d, %s", rc, out);
    printf("  eval folder with zebra -> %s", out);
    snprintf(a, sizeof a, "knn %s --data-path %s/flat --eval-path %s/ev --val-split 0.2", M, test_dir, test_dir);
    rc = run(a, out, sizeof out);
    CHECK(rc != 0 && strstr(out, "not both"), "--eval-path with --val-split: exit %d, %s", rc, out);
    snprintf(a, sizeof a,
             "finetune %s --data-path %s/flat --val-split 0.25 --output-dir %s/ft --batch-size 8 --epochs 1 "
             "--warmup-epochs 0 --max-steps 2",
             M, test_dir, test_dir);
    rc = run(a, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "9 evaluation images"), "finetune --val-split: exit %d, %s", rc, out);
    /* a 3-channel model file without the statistics of its data (as an
     * official checkpoint): ImageNet's, said in one line; one with them
     * (pretrain's) uses its own */
    snprintf(a, sizeof a, "init --model test-tiny --in-chans 3 --out %s/rgb.safetensors", test_dir);
    rc = run(a, out, sizeof out);
    snprintf(a, sizeof a, "knn --model %s/rgb.safetensors --data-path %s/flat --val-split 0.25 --threads 1", test_dir,
             test_dir);
    rc = run(a, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "ImageNet's mean and std"), "a model without statistics: exit %d, %s", rc, out);
    snprintf(a, sizeof a, "knn --model %s/rgb.safetensors --data-path %s/flat --val-split 0.25 --threads 1 --mean 0.5 "
             "--std 0.25", test_dir, test_dir);
    rc = run(a, out, sizeof out);
    CHECK(rc == 0 && !strstr(out, "ImageNet"), "--mean/--std did not override: exit %d, %s", rc, out);
    snprintf(a, sizeof a, "knn --model %s/rgb.safetensors --data-path %s/flat --val-split 0.25 --mean 0.5", test_dir,
             test_dir);
    rc = run(a, out, sizeof out);
    CHECK(rc != 0 && strstr(out, "give both --mean and --std"), "--mean without --std: exit %d, %s", rc, out);
    snprintf(a, sizeof a, "knn --model %s/pre2/model.safetensors --data-path %s/flat --val-split 0.25 --threads 1",
             test_dir, test_dir);
    rc = run(a, out, sizeof out);
    CHECK(rc == 0 && !strstr(out, "ImageNet"), "a model with its statistics: exit %d, %s", rc, out);
    /* 4. one bad image among many: named without the flag; skipped, counted
     * and listed with it; more than 1% is an error */
    char p[512];
    for (int c = 0; c < 2; c++)
        for (int i = 0; i < 60; i++) {
            snprintf(p, sizeof p, "%s/many/%s/%03d.png", test_dir, c ? "b" : "a", i);
            photo_write(p, 12, 10, 1, i, 80 + 100 * c);
        }
    snprintf(p, sizeof p, "%s/many/b/broken.jpg", test_dir);
    test_write_bytes(p, "not a jpeg at all", 17);
    const char *P = "--model test-tiny --threads 1 --num-workers 1 --batch-size 16 --epochs 1 --warmup-epochs 0 "
                    "--recon-images 0";
    snprintf(a, sizeof a, "pretrain %s --data-path %s/many --output-dir %s/bad0", P, test_dir, test_dir);
    rc = run(a, out, sizeof out);
    CHECK(rc != 0 && strstr(out, "broken.jpg"), "one bad image without --skip-bad-images: exit %d, %s", rc, out);
    snprintf(a, sizeof a, "pretrain %s --data-path %s/many --output-dir %s/bad1 --skip-bad-images", P, test_dir,
             test_dir);
    rc = run(a, out, sizeof out);
    char list[1024] = "";
    snprintf(p, sizeof p, "%s/bad1/bad_images.txt", test_dir);
    FILE *lf = fopen(p, "r");
    if (lf) {
        size_t k = fread(list, 1, sizeof list - 1, lf);
        list[k] = 0;
        fclose(lf);
    }
    CHECK(rc == 0 && strstr(out, "1 of the 121 training images do not decode") && strstr(list, "broken.jpg") &&
              !strchr(strchr(list, '\n') ? strchr(list, '\n') + 1 : "", '\n'),
          "--skip-bad-images: exit %d, list '%s', %s", rc, list, out);
    snprintf(p, sizeof p, "%s/many/a/broken2.png", test_dir);
    test_write_bytes(p, "junk", 4);
    snprintf(a, sizeof a, "pretrain %s --data-path %s/many --output-dir %s/bad2 --skip-bad-images", P, test_dir,
             test_dir);
    rc = run(a, out, sizeof out);
    CHECK(rc != 0 && strstr(out, "more than the 1%"), "2 bad of 122 with --skip-bad-images: exit %d, %s", rc, out);
    printf("  2 bad images of 122 -> %s", out);
    TEST_END();
}
