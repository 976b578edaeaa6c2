/* The library's side of the processes (include/maec.h, "processes"):
 * non-blocking all-reduces of gradient buckets as the backward pass makes
 * them, waited for before the optimizer step. */
#ifndef MAEC_COMM_H
#define MAEC_COMM_H
#include <stddef.h>

#include "maec.h"

/* start summing buf[n] over the processes, in place (up to 512 at once);
 * comm_progress lets MPI move them on while the caller computes;
 * comm_waitall waits for every one started */
int comm_iallreduce_sum(maec_comm *c, float *buf, size_t n, maec_error *err);
void comm_progress(maec_comm *c);
int comm_waitall(maec_comm *c, maec_error *err);
/* buf[n] in backend memory summed over the processes and multiplied by
 * scale, in place: with NCCL on the GPU's own stream (a build with MPI=1
 * CUDA=1; its communicator made at the first call, from an id rank 0 sends
 * over MPI), else through host[n] (the caller's buffer): download, MPI
 * all-reduce, scale, upload. Every process calls it alike. */
struct maec_backend;
int comm_allreduce_backend(maec_comm *c, const struct maec_backend *be, float *buf, size_t n, float scale,
                           float *host, maec_error *err);
#endif
