/*
 * fl_alloc.h - the allocation wrappers of the libraries.
 *
 * compress/, proto/ and model/ allocate only through these, so that tests can
 * make the Nth allocation fail (fl_alloc_fail_after) and check that every
 * error path returns FL_ERR_NOMEM and leaks nothing. OOM policy: libraries
 * return FL_ERR_NOMEM; the programs treat it as fatal for the process only
 * where there is no sensible way to go on.
 *
 * The failure-injection counter is global and not thread-safe: it is a test
 * facility. In normal runs it is disabled and costs one branch.
 */
#ifndef FL_ALLOC_H
#define FL_ALLOC_H

#include <stddef.h>

void *fl_malloc(size_t size);
void *fl_calloc(size_t count, size_t size);
void *fl_realloc(void *ptr, size_t size);
void fl_free(void *ptr);

/* Zeroed memory for a large array read and written at random (an
 * accumulator): from FL_HUGE_PAGE bytes on, aligned to FL_HUGE_PAGE and
 * marked for transparent huge pages (Linux madvise(MADV_HUGEPAGE); where
 * the kernel says no, ordinary pages), so that scattered accesses miss the
 * TLB less. Smaller arrays: fl_calloc(). Free with fl_free(). NULL on
 * overflow or when out of memory. */
enum { FL_HUGE_PAGE = 2 * 1024 * 1024 };
void *fl_calloc_huge(size_t count, size_t size);

/* Test hook: after `n` more successful allocations, every allocation fails
 * until fl_alloc_fail_reset(). n < 0 disables injection. */
void fl_alloc_fail_after(long n);
void fl_alloc_fail_reset(void);
/* Number of allocations performed since the last reset (for torture loops). */
long fl_alloc_count(void);

#endif /* FL_ALLOC_H */
