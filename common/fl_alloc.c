#include "common/fl_alloc.h"

#include <stdlib.h>

static long fail_after = -1;
static long alloc_count;

static int should_fail(void)
{
    alloc_count++;
    if (fail_after < 0)
        return 0;
    if (fail_after == 0)
        return 1;
    fail_after--;
    return 0;
}

void *fl_malloc(size_t size)
{
    if (should_fail())
        return NULL;
    return malloc(size != 0 ? size : 1);
}

void *fl_calloc(size_t count, size_t size)
{
    if (should_fail())
        return NULL;
    if (count == 0 || size == 0)
        return calloc(1, 1);
    return calloc(count, size);
}

void *fl_realloc(void *ptr, size_t size)
{
    if (should_fail())
        return NULL;
    return realloc(ptr, size != 0 ? size : 1);
}

void fl_free(void *ptr) { free(ptr); }

void fl_alloc_fail_after(long n)
{
    fail_after = n;
    alloc_count = 0;
}

void fl_alloc_fail_reset(void)
{
    fail_after = -1;
    alloc_count = 0;
}

long fl_alloc_count(void) { return alloc_count; }
