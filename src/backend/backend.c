/* The backends compiled in, by name. */
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"

const maec_backend *maec_backend_by_name(const char *name)
{
    if (!name) return NULL;
    if (!strcmp(name, "cpu")) return maec_backend_cpu();
    if (!strcmp(name, "ref")) return maec_backend_ref();
    return NULL;
}

const maec_backend *maec_backend_default(void)
{
    const maec_backend *b = maec_backend_by_name(getenv("MAEC_BACKEND"));
    return b ? b : maec_backend_cpu();
}
