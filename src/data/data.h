/* The data layer's declarations are public: include/maec_data.h. */
#ifndef MAEC_DATA_H
#define MAEC_DATA_H
#include "maec_data.h"
#endif
