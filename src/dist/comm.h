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
#endif
