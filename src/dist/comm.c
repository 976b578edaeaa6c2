/* The processes of a data-parallel run (include/maec.h, "processes"): MPI
 * where maec is built with it (make MPI=1) and started by mpirun, else one
 * process on its own. */
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "dist/comm.h"
#include "maec.h"
#include "util.h"
#ifdef MAEC_MPI
#include <mpi.h>
#endif
#include "backend/backend.h"
#ifdef MAEC_NCCL
#include <nccl.h>

#include "backend/cuda.h"
#endif

#define MAX_PENDING 512

struct maec_comm {
    int rank, size;
    int mpi; /* initialized MPI (and finalizes it) */
#ifdef MAEC_MPI
    MPI_Request pending[MAX_PENDING];
    int npending;
#endif
#ifdef MAEC_NCCL
    ncclComm_t nccl; /* made at the first all-reduce of GPU memory */
#endif
};

int maec_comm_init(int *argc, char ***argv, maec_comm **out, maec_error *err)
{
    *out = NULL;
    maec_comm *c = calloc(1, sizeof *c);
    if (!c) return maec_fail(err, MAEC_ENOMEM, "out of memory");
    c->size = 1;
#ifdef MAEC_MPI
    /* only under a launcher: a plain run stays one process without MPI */
    if (getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK")) {
        int inited = 0;
        MPI_Initialized(&inited);
        if (!inited && MPI_Init(argc, argv) != MPI_SUCCESS) {
            free(c);
            return maec_fail(err, MAEC_EIO, "MPI_Init failed");
        }
        c->mpi = !inited;
        MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
        MPI_Comm_size(MPI_COMM_WORLD, &c->size);
        /* an error in one process ends the job instead of hanging it */
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
    }
#else
    (void)argc, (void)argv;
#endif
    *out = c;
    return 0;
}

void maec_comm_finalize(maec_comm *c)
{
    if (!c) return;
#ifdef MAEC_NCCL
    if (c->nccl) ncclCommDestroy(c->nccl);
#endif
#ifdef MAEC_MPI
    if (c->mpi) MPI_Finalize();
#endif
    free(c);
}

int maec_comm_rank(const maec_comm *c) { return c ? c->rank : 0; }
int maec_comm_size(const maec_comm *c) { return c ? c->size : 1; }

void maec_comm_abort(maec_comm *c, int code)
{
#ifdef MAEC_MPI
    if (c && c->size > 1) MPI_Abort(MPI_COMM_WORLD, code);
#endif
    (void)c;
    exit(code);
}

int maec_comm_allreduce_sum(maec_comm *c, float *buf, size_t n, maec_error *err)
{
    if (!c || c->size <= 1) return 0;
#ifdef MAEC_MPI
    for (size_t o = 0; o < n;) { /* MPI counts are ints */
        int k = n - o > (size_t)INT_MAX ? INT_MAX : (int)(n - o);
        if (MPI_Allreduce(MPI_IN_PLACE, buf + o, k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS)
            return maec_fail(err, MAEC_EIO, "MPI_Allreduce failed");
        o += (size_t)k;
    }
    return 0;
#else
    (void)buf, (void)n;
    return maec_fail(err, MAEC_EINVAL, "this build has no MPI");
#endif
}

int maec_comm_allreduce_sum_f64(maec_comm *c, double *buf, int n, maec_error *err)
{
    if (!c || c->size <= 1) return 0;
#ifdef MAEC_MPI
    if (MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS)
        return maec_fail(err, MAEC_EIO, "MPI_Allreduce failed");
    return 0;
#else
    (void)buf, (void)n;
    return maec_fail(err, MAEC_EINVAL, "this build has no MPI");
#endif
}

int maec_comm_barrier(maec_comm *c, maec_error *err)
{
    if (!c || c->size <= 1) return 0;
#ifdef MAEC_MPI
    if (MPI_Barrier(MPI_COMM_WORLD) != MPI_SUCCESS) return maec_fail(err, MAEC_EIO, "MPI_Barrier failed");
    return 0;
#else
    return maec_fail(err, MAEC_EINVAL, "this build has no MPI");
#endif
}

int comm_iallreduce_sum(maec_comm *c, float *buf, size_t n, maec_error *err)
{
    if (!c || c->size <= 1 || n == 0) return 0;
#ifdef MAEC_MPI
    for (size_t o = 0; o < n;) {
        if (c->npending == MAX_PENDING && comm_waitall(c, err)) return err->code;
        int k = n - o > (size_t)INT_MAX ? INT_MAX : (int)(n - o);
        if (MPI_Iallreduce(MPI_IN_PLACE, buf + o, k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD,
                           &c->pending[c->npending]) != MPI_SUCCESS)
            return maec_fail(err, MAEC_EIO, "MPI_Iallreduce failed");
        c->npending++;
        o += (size_t)k;
    }
    return 0;
#else
    (void)buf;
    return maec_fail(err, MAEC_EINVAL, "this build has no MPI");
#endif
}

void comm_progress(maec_comm *c)
{
#ifdef MAEC_MPI
    int done;
    if (c && c->npending) MPI_Testall(c->npending, c->pending, &done, MPI_STATUSES_IGNORE);
#else
    (void)c;
#endif
}

int comm_waitall(maec_comm *c, maec_error *err)
{
#ifdef MAEC_MPI
    if (!c || !c->npending) return 0;
    int r = MPI_Waitall(c->npending, c->pending, MPI_STATUSES_IGNORE);
    c->npending = 0;
    return r == MPI_SUCCESS ? 0 : maec_fail(err, MAEC_EIO, "MPI_Waitall failed");
#else
    (void)c, (void)err;
    return 0;
#endif
}

#ifdef MAEC_NCCL
/* the NCCL communicator of the processes, made once (every process at the
 * same all-reduce): rank 0's id goes to all over MPI */
static int nccl_ready(maec_comm *c, maec_error *err)
{
    if (c->nccl) return 0;
    ncclUniqueId id;
    ncclResult_t r = ncclSuccess;
    if (c->rank == 0) r = ncclGetUniqueId(&id);
    int ok = r == ncclSuccess, all = 0;
    MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (!all) return maec_fail(err, MAEC_EIO, "NCCL: no id: %s", ncclGetErrorString(r));
    MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
    if ((r = ncclCommInitRank(&c->nccl, c->size, id, c->rank)) != ncclSuccess) {
        c->nccl = NULL;
        return maec_fail(err, MAEC_EIO, "NCCL could not start on rank %d: %s (one GPU per process: NCCL refuses "
                         "two ranks on one GPU)", c->rank, ncclGetErrorString(r));
    }
    return 0;
}

/* whether be's memory is a GPU's that NCCL can sum in place */
static int uses_nccl(const maec_backend *be) { return be == maec_backend_cuda() && !maec_cuda_emulated(); }
#endif

int comm_allreduce_backend(maec_comm *c, const maec_backend *be, float *buf, size_t n, float scale, float *host,
                           maec_error *err)
{
    if (!c || c->size <= 1 || n == 0) return 0;
#ifdef MAEC_NCCL
    if (uses_nccl(be)) {
        if (nccl_ready(c, err)) return err->code;
        ncclResult_t r = ncclAllReduce(buf, buf, n, ncclFloat, ncclSum, c->nccl, (cudaStream_t)maec_cuda_stream());
        if (r != ncclSuccess) return maec_fail(err, MAEC_EIO, "NCCL all-reduce failed: %s", ncclGetErrorString(r));
        be->scale(buf, n, scale); /* queued after the sum on the same stream */
        return 0;
    }
#endif
    be->download(host, buf, n * sizeof(float));
    int r = maec_comm_allreduce_sum(c, host, n, err);
    if (r) return r;
    for (size_t i = 0; i < n; i++) host[i] *= scale;
    be->upload(buf, host, n * sizeof(float));
    return 0;
}
