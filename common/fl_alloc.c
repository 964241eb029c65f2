#include "common/fl_alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sys/mman.h>
#endif

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

void *fl_calloc_huge(size_t count, size_t size)
{
    if (count != 0 && size > SIZE_MAX / count)
        return NULL; /* count * size overflows */
    const size_t bytes = count * size;
    if (bytes < FL_HUGE_PAGE)
        return fl_calloc(count, size);
    if (bytes > SIZE_MAX - FL_HUGE_PAGE || should_fail())
        return NULL;
    const size_t rounded = (bytes + FL_HUGE_PAGE - 1) / FL_HUGE_PAGE *
                           FL_HUGE_PAGE;
    void *p = aligned_alloc(FL_HUGE_PAGE, rounded);
    if (p == NULL)
        return NULL;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    /* advice only: without THP the pages are ordinary ones */
    (void)madvise(p, rounded, MADV_HUGEPAGE);
#endif
    memset(p, 0, rounded); /* first touch after the advice */
    return p;
}

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
