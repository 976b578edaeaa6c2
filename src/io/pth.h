/* PyTorch checkpoints (.pth) without Python: torch.save's zip format
 * (PyTorch 1.6 and later). The archive is read with libzip; its data.pkl by
 * a small pickle machine that knows the opcodes torch.save writes and builds
 * no Python object: a class it does not know becomes an opaque value, so
 * nothing in the file is ever run. */
#ifndef MAEC_PTH_H
#define MAEC_PTH_H
#include "safetensors.h"

/* f->buf and f->len hold the whole file (it starts with a zip signature).
 * On success f holds, as st_open would, the floating-point tensors of the
 * state dict: the "model" entry of a checkpoint dict (what the official MAE
 * code saves), else "state_dict", else the top level; integer tensors and
 * other values are left out, a "module." prefix on every name is removed,
 * each tensor is copied contiguous into its own byte range of a new f->buf
 * in its stored dtype (F32, F16, BF16 or F64). On failure the caller
 * closes f. */
int pth_read(st_file *f, maec_error *err);

/* The first bytes of a file from torch.save's legacy (pre-1.6) format. */
int pth_is_legacy(const char *buf, size_t len);
#endif
