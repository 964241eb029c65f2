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

/* Test hook: after `n` more successful allocations, every allocation fails
 * until fl_alloc_fail_reset(). n < 0 disables injection. */
void fl_alloc_fail_after(long n);
void fl_alloc_fail_reset(void);
/* Number of allocations performed since the last reset (for torture loops). */
long fl_alloc_count(void);

#endif /* FL_ALLOC_H */
