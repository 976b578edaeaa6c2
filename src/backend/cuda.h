/* The cuda backend (backend/cuda.cu, built by `make CUDA=1`): opening a GPU
 * and what can be asked of it. Without CUDA in the build, backend.c gives
 * the same functions, saying so. One GPU per process. */
#ifndef MAEC_BACKEND_CUDA_H
#define MAEC_BACKEND_CUDA_H
#include <stddef.h>

#include "backend/backend.h"

/* Opens GPU `device` (0-based) for this process, with TF32 products or
 * not (again with the same device: only the TF32 choice changes). 0, or -1
 * with one line in msg: no GPU, a driver too old, a device that is not
 * there, a GPU too old. */
int maec_cuda_open(int device, int tf32, char *msg, size_t msglen);
/* the cuda backend once opened, else NULL */
const maec_backend *maec_backend_cuda(void);
/* bytes of the backend's allocations in use now and at the most */
void maec_cuda_memory(size_t *now, size_t *peak);
/* "NVIDIA H200 (cuda:0, compute 9.0, 140 GiB; driver CUDA 13.0, ...)"; -1
 * when no GPU is open */
int maec_cuda_describe(char *buf, size_t n);
/* the stream every op runs on (a cudaStream_t), for NCCL */
void *maec_cuda_stream(void);
/* 1 in a build of make CUDA=emu (tests/cuda_emu: no GPU, for tests) */
int maec_cuda_emulated(void);
#endif
