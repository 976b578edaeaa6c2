/* The backends compiled in, by name. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "maec.h"
#include "util.h"

const maec_backend *maec_backend_by_name(const char *name)
{
    if (!name) return NULL;
    if (!strcmp(name, "cpu")) return maec_backend_cpu();
    if (!strcmp(name, "ref")) return maec_backend_ref();
    if (!strcmp(name, "guard")) return maec_backend_guard();
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
    const maec_backend *b = maec_backend_by_name(name);
    if (!b) return maec_fail(err, MAEC_EINVAL, "no backend '%s' in this build (cpu, ref, guard)", name ? name : "(null)");
    chosen = b;
    return 0;
}

const char *maec_backend_name(void) { return maec_backend_default()->name; }

/* the compute threads (OpenMP, and OpenBLAS through it): the cpu backend's */
void maec_set_threads(int n)
{
    if (n > 0) omp_set_num_threads(n);
}

int maec_get_threads(void) { return omp_get_max_threads(); }
