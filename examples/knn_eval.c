/* Evaluate an encoder on labelled images as `maec knn` does, with the
 * public headers alone (maec.h, maec_data.h): open the training and test
 * splits of a data set (an image folder with train/ and val/, Fashion-MNIST,
 * CIFAR, .npy), take the normalization the model was trained with, and
 * print the weighted k-NN top-1 of its frozen class-token features.
 *   knn_eval model.safetensors DATA_PATH [k]        (k = 20) */
#include <maec.h>
#include <maec_data.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    maec_blas_reexec(argv);
    if (argc < 3) { fprintf(stderr, "usage: %s model.safetensors DATA_PATH [k]\n", argv[0]); return 2; }
    int k = argc > 3 ? atoi(argv[3]) : 20;
    maec_error err = {0};
    maec_classifier *c = NULL;
    maec_dataset *train = NULL, *test = NULL;
    int rc = 1, imagenet = 0;
    maec_classifier_opts o; /* no head, the final norm kept: features only */
    maec_classifier_defaults(&o);
    o.num_classes = 0, o.global_pool = 0;
    if (maec_classifier_load(argv[1], NULL, &o, 0, &c, &err) ||
        maec_dataset_open(argv[2], "train", &train, &err) || maec_dataset_open(argv[2], "test", &test, &err))
        goto fail;
    float mean[3], std[3];
    int C = maec_classifier_config(c)->in_chans;
    if (maec_eval_normalization(maec_classifier_get_meta(c, "maec_data"), train, C, 1, mean, std, &imagenet, &err))
        goto fail;
    printf("%s: %lld train, %lld test images (%s); normalization %s\n", argv[2],
           (long long)maec_dataset_size(train), (long long)maec_dataset_size(test), maec_dataset_format(train),
           imagenet ? "ImageNet's" : "the model's");
    double top1;
    if (maec_eval_knn(c, train, test, MAEC_FEATURE_CLS, k, 0.07f, mean, std, 256, 2, &top1, &err)) goto fail;
    printf("k-NN (k %d, T 0.07) top-1: %.2f%%\n", k, 100 * top1);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "knn_eval: %s (error %d)\n", err.msg, err.code);
done:
    maec_dataset_free(train);
    maec_dataset_free(test);
    maec_classifier_free(c);
    return rc;
}
