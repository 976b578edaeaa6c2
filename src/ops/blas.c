/* Which kernels OpenBLAS runs on, and the way to correct its choice.
 *
 * OpenBLAS's dynamic build (Debian's) picks its kernels from the CPU's
 * family and model when it is loaded. A CPU newer than the build, e.g. a
 * 5th-generation Xeon (family 6, model 207) under Debian 12's OpenBLAS
 * 0.3.21, is not in its table and gets the generic SSE3 kernels
 * ("Prescott"): sgemm at 2048^3 ran at 42 GFLOP/s there, against 209-233
 * with the SkylakeX kernels the CPU can run (docs/PERF.md). The variable
 * OPENBLAS_CORETYPE overrides the choice, but only when OpenBLAS is loaded,
 * i.e. before main(); so a program corrects it by running itself again. */
#define _GNU_SOURCE
#include <cblas.h>
#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

#include "maec.h"

const char *maec_blas_core(void)
{
    const char *c = openblas_get_corename();
    return c ? c : "unknown";
}

/* OpenBLAS's cores with AVX2 kernels or better: chosen for a CPU it knows */
static int core_is_modern(const char *core)
{
    static const char *const modern[] = {"haswell", "zen", "excavator", "skylakex", "cooperlake", "sapphirerapids"};
    for (size_t i = 0; i < sizeof modern / sizeof modern[0]; i++)
        if (!strcasecmp(core, modern[i])) return 1;
    return 0;
}

const char *maec_blas_core_advice(void)
{
    if (getenv("OPENBLAS_CORETYPE")) return NULL; /* the user's choice stands */
    if (core_is_modern(maec_blas_core())) return NULL;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512cd"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
    return NULL;
}

void maec_blas_reexec(char **argv)
{
    const char *core = maec_blas_core_advice();
    if (!core || !argv || !argv[0]) return;
    if (setenv("OPENBLAS_CORETYPE", core, 1)) return;
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE"); /* exec failed: go on with OpenBLAS as it is */
}
