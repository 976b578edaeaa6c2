/* The backends compiled in, by name, and the device choice. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cuda.h"
#include "maec.h"
#include "util.h"

#ifndef MAEC_CUDA
/* a build without CUDA: the cuda backend's functions say so */
int maec_cuda_open(int device, int tf32, char *msg, size_t msglen)
{
    (void)device;
    (void)tf32;
    snprintf(msg, msglen, "this maec was built without CUDA: rebuild with make CUDA=1 (needs the CUDA toolkit, nvcc)");
    return -1;
}
const maec_backend *maec_backend_cuda(void) { return NULL; }
void maec_cuda_memory(size_t *now, size_t *peak)
{
    if (now) *now = 0;
    if (peak) *peak = 0;
}
int maec_cuda_describe(char *buf, size_t n)
{
    (void)buf;
    (void)n;
    return -1;
}
int maec_cuda_emulated(void) { return 0; }
void *maec_cuda_stream(void) { return NULL; }
#endif

/* "cuda" opens GPU 0 when no GPU is open yet (MAEC_BACKEND=cuda) */
const maec_backend *maec_backend_by_name(const char *name)
{
    if (!name) return NULL;
    if (!strcmp(name, "cpu")) return maec_backend_cpu();
    if (!strcmp(name, "ref")) return maec_backend_ref();
    if (!strcmp(name, "guard")) return maec_backend_guard();
    if (!strcmp(name, "cuda")) {
        static int failed; /* tried once, and said why: not again at every model */
        char msg[256];
        if (!maec_backend_cuda() && !failed && maec_cuda_open(0, 0, msg, sizeof msg)) {
            failed = 1;
            fprintf(stderr, "maec: cuda: %s\n", msg); /* why MAEC_BACKEND=cuda is not what runs */
        }
        return maec_backend_cuda();
    }
    return NULL;
}

static const maec_backend *chosen; /* maec_set_backend's; NULL: MAEC_BACKEND's or cpu */

const maec_backend *maec_backend_default(void)
{
    if (chosen) return chosen;
    const maec_backend *b = maec_backend_by_name(getenv("MAEC_BACKEND"));
    return b ? b : maec_backend_cpu();
}

int maec_set_backend(const char *name, maec_error *err)
{
    if (name && !strcmp(name, "cuda")) return maec_set_device("cuda", 0, err);
    const maec_backend *b = maec_backend_by_name(name);
    if (!b)
        return maec_fail(err, MAEC_EINVAL, "no backend '%s' in this build (cpu, ref, guard%s)", name ? name : "(null)",
#ifdef MAEC_CUDA
                         ", cuda"
#else
                         ""
#endif
        );
    chosen = b;
    return 0;
}

const char *maec_backend_name(void) { return maec_backend_default()->name; }

int maec_set_device(const char *device, int tf32, maec_error *err)
{
    if (!device || !*device || !strcmp(device, "cpu")) {
        chosen = maec_backend_cpu();
        return 0;
    }
    int n = 0;
    if (!strcmp(device, "cuda")) {
        n = 0;
    } else if (!strncmp(device, "cuda:", 5)) {
        char *end;
        long v = strtol(device + 5, &end, 10);
        if (end == device + 5 || *end || v < 0 || v > 1023)
            return maec_fail(err, MAEC_EINVAL, "--device: '%s' is not a device (cpu, cuda, cuda:N)", device);
        n = (int)v;
    } else {
        return maec_fail(err, MAEC_EINVAL, "--device: '%s' is not a device (cpu, cuda, cuda:N)", device);
    }
    char msg[256];
    if (maec_cuda_open(n, tf32 != 0, msg, sizeof msg)) return maec_fail(err, MAEC_EINVAL, "%s", msg);
    chosen = maec_backend_cuda();
    return 0;
}

void maec_device_describe(char *buf, size_t n)
{
    if (!n) return;
    if (maec_backend_default() == maec_backend_cuda() && maec_backend_cuda() && maec_cuda_describe(buf, n) == 0)
        return;
    snprintf(buf, n, "%s", maec_backend_default()->name);
}

void maec_device_memory(size_t *now, size_t *peak) { maec_cuda_memory(now, peak); }

/* a size header in front of the block says which allocator it came from */
typedef struct {
    const maec_backend *be; /* NULL: malloc */
    size_t pad[7];          /* 64 bytes: the caller's part stays 64-byte aligned */
} host_hdr;

void *backend_host_alloc(const maec_backend *be, size_t bytes)
{
    size_t n = bytes + sizeof(host_hdr);
    if (n < bytes) return NULL;
    host_hdr *h = be && be->host_alloc ? be->host_alloc(n) : NULL;
    if (h) h->be = be;
    else if ((h = aligned_alloc(64, (n + 63) / 64 * 64))) h->be = NULL;
    return h ? h + 1 : NULL;
}

void *maec_host_alloc(size_t bytes) { return backend_host_alloc(maec_backend_default(), bytes); }

void maec_host_free(void *p)
{
    if (!p) return;
    host_hdr *h = (host_hdr *)p - 1;
    if (h->be) h->be->host_free(h);
    else free(h);
}

/* the compute threads (OpenMP, and OpenBLAS through it): the cpu backend's */
void maec_set_threads(int n)
{
    if (n > 0) omp_set_num_threads(n);
}

int maec_get_threads(void) { return omp_get_max_threads(); }
