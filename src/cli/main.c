/* maec: the command. Each subcommand lives in its own file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda.h"
#include "cli.h"

/* what runs a model takes --device and --tf32; only what trains runs as
 * several processes (mpirun) */
enum { RUNS_MODEL = 1, PARALLEL = 2 };

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
    int flags;
} subcommand;

static const subcommand commands[] = {
    {"pretrain", cmd_pretrain, "pretrain an MAE on a data set", RUNS_MODEL | PARALLEL},
    {"reconstruct", cmd_reconstruct, "show original | masked | reconstruction | + visible", RUNS_MODEL},
    {"knn", cmd_knn, "k-NN top-1 of the frozen encoder's features", RUNS_MODEL},
    {"linprobe", cmd_linprobe, "linear probe (BatchNorm + linear, LARS) on frozen features", RUNS_MODEL},
    {"finetune", cmd_finetune, "fine-tune (or train from scratch) a ViT classifier", RUNS_MODEL | PARALLEL},
    {"predict", cmd_predict, "a fine-tuned classifier's classes for a data set or image files", RUNS_MODEL},
    {"embed", cmd_embed, "write the frozen features of a split to .npy", RUNS_MODEL},
    {"report", cmd_report, "a run's (or several runs') self-contained HTML report", 0},
    {"grad", cmd_grad, "one forward and backward pass: loss and every gradient", RUNS_MODEL},
    {"init", cmd_init, "write a freshly initialized model", 0},
    {"info", cmd_info, "print a model file's configuration and tensors", 0},
    {"convert", cmd_convert, "an official .pth (or any weights file) as maec's model file", 0},
};

static void usage(FILE *f)
{
    fprintf(f, "maec %s: masked autoencoders (He et al. 2021) in C\n\nusage: maec <command> [options]\n\ncommands:\n", MAEC_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'maec <command> --help' lists a command's options.\n");
}

static maec_comm *g_comm;
maec_comm *cli_comm(void) { return g_comm; }

/* --device S (--device=S) and --tf32 taken out of argv (after the command
 * name): the device is chosen before the command makes or loads any model.
 * 0, or -1 (said) for a --device without its value. */
static int take_device_flags(int *argc, char **argv, const char **device, int *tf32)
{
    for (int i = 2; i < *argc; i++) {
        int take = 0;
        if (!strcmp(argv[i], "--device")) {
            if (i + 1 >= *argc) {
                cli_error("--device needs a value: cpu, cuda or cuda:N");
                return -1;
            }
            *device = argv[i + 1];
            take = 2;
        } else if (!strncmp(argv[i], "--device=", 9)) {
            *device = argv[i] + 9;
            take = 1;
        } else if (!strcmp(argv[i], "--tf32")) {
            *tf32 = 1;
            take = 1;
        } else if (!strcmp(argv[i], "--")) {
            break;
        }
        if (take) {
            memmove(argv + i, argv + i + take, (size_t)(*argc - i - take + 1) * sizeof *argv); /* with argv's NULL */
            *argc -= take;
            i--;
        }
    }
    return 0;
}

/* "cuda" under mpirun: the GPU of this process's local rank (one per rank) */
static const char *rank_device(const char *device, char *buf, size_t n)
{
    if (!device || strcmp(device, "cuda") || maec_comm_size(g_comm) < 2) return device;
    const char *vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID", "LOCAL_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) {
            snprintf(buf, n, "cuda:%d", atoi(v));
            return buf;
        }
    }
    return device;
}

int main(int argc, char **argv)
{
    maec_blas_reexec(argv); /* OpenBLAS's fitting kernels where it does not know the CPU */
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        /* OPENBLAS_CORETYPE is named where set (by the user, or by
         * maec_blas_reexec): a user's may hold OpenBLAS below the kernels
         * it would choose itself (docs/PERF.md) */
        const char *ct = getenv("OPENBLAS_CORETYPE");
        printf("maec %s\nOpenBLAS kernels: %s", MAEC_VERSION, maec_blas_core());
        if (ct) printf(" (OPENBLAS_CORETYPE=%s)", ct);
#ifdef MAEC_CUDA
        printf(maec_cuda_emulated() ? "\nGPU: CUDA emulated on the CPU (make CUDA=emu: for tests, slow)"
                                    : "\nGPU: CUDA (--device cuda)");
#else
        printf("\nGPU: no (make CUDA=1 builds it)");
#endif
#if defined(MAEC_MPI) && defined(MAEC_NCCL)
        printf("\ndata parallel: MPI, NCCL on GPUs (mpirun -np N maec ...)");
#elif defined(MAEC_MPI)
        printf("\ndata parallel: MPI (mpirun -np N maec ...)");
#else
        printf("\ndata parallel: no (make MPI=1 builds it)");
#endif
        printf("\n");
        return 0;
    }
    const char *be = getenv("MAEC_BACKEND"); /* ref: every op as plain loops, the specification (slow) */
    maec_error err;
    if (be && *be && maec_set_backend(be, &err)) {
        cli_error("MAEC_BACKEND: %s", err.msg);
        return 2;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            /* the processes mpirun started (one, without it) */
            if (maec_comm_init(&argc, &argv, &g_comm, &err)) {
                cli_error("%s", err.msg);
                return 1;
            }
            if (commands[i].flags & RUNS_MODEL) {
                const char *device = getenv("MAEC_DEVICE");
                const char *t = getenv("MAEC_TF32");
                int tf32 = t && *t && strcmp(t, "0");
                char buf[32];
                cli_set_model_command(1);
                if (take_device_flags(&argc, argv, &device, &tf32)) {
                    maec_comm_finalize(g_comm);
                    return 2;
                }
                if (device && *device && maec_set_device(rank_device(device, buf, sizeof buf), tf32, &err)) {
                    if (maec_comm_size(g_comm) > 1) { /* the others would wait for this one forever */
                        cli_error("rank %d of %d: %s", maec_comm_rank(g_comm), maec_comm_size(g_comm), err.msg);
                        fflush(stderr);
                        maec_comm_abort(g_comm, 2);
                    }
                    cli_error("%s", err.msg);
                    maec_comm_finalize(g_comm);
                    return 2;
                }
            }
            int rc;
            if (maec_comm_size(g_comm) > 1 && !(commands[i].flags & PARALLEL)) {
                if (maec_comm_rank(g_comm) == 0)
                    cli_error("%s runs as one process: only pretrain and finetune run over several (start it "
                              "without mpirun)", commands[i].name);
                fflush(stderr);
                maec_comm_finalize(g_comm); /* every process says no alike: an orderly end */
                return 2;
            } else {
                rc = commands[i].run(argc - 2, argv + 2);
            }
            /* stopped by a signal: every process stopped at the same step (the
             * trainer agrees on it), an orderly end; another failure may be
             * this process's alone, and the others would wait for it forever */
            if (rc && rc < 128 && maec_comm_size(g_comm) > 1) {
                fprintf(stderr, "maec: rank %d of %d ended with status %d; ending the job\n", maec_comm_rank(g_comm),
                        maec_comm_size(g_comm), rc);
                maec_comm_abort(g_comm, rc);
            }
            maec_comm_finalize(g_comm);
            return rc;
        }
    cli_error("unknown command '%s' (see maec --help)", argv[1]);
    return 2;
}
