/* A pool of freed NumPy data buffers, kept between FFT calls.
 *
 * Why: scipy.fft allocates every transform's output itself (it takes no `out`
 * argument), and buffers of several MiB come from mmap: each call page-faults
 * all of them again on first touch. Measured on ho-5x5 forward, one thread:
 * 4615 minor faults and 32 ms per call, against 16.5 ms with no faults.
 *
 * How: a NumPy memory handler (numpy >= 1.22, PyDataMem_SetHandler) that the
 * FFT strategy installs for the duration of a call. It is a context-local
 * setting, so only allocations made by the calling thread inside the call go
 * through it. A freed buffer goes into the pool instead of back to the C
 * library; an allocation of exactly the same size takes it back (a repeated
 * call asks for the same sizes in the same order).
 *
 * Bound: every handler (one per call) has a cap, the call's workspace plus
 * its outputs. Bytes live through that handler plus bytes in the pool never
 * exceed the cap: a miss evicts the oldest pooled buffers first, a free that
 * would not fit is given back to the C library. Only buffers freed while the
 * call runs are kept (its outputs, freed later by the caller, are not), so
 * between calls the pool holds at most the cap minus the outputs. The pool is shared by all
 * threads, under a mutex.
 *
 * Honesty towards tracemalloc: NumPy untracks a buffer when it frees it; the
 * pool tracks it again (domain FC_POOL_DOMAIN) while it is kept and untracks
 * it when it hands it out or gives it back, so traced memory always includes
 * the kept buffers.
 */
#ifndef FASTCONV_FFT_POOL_H
#define FASTCONV_FFT_POOL_H

#include <Python.h>
#include <numpy/arrayobject.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <sys/mman.h>
#endif

#define FC_POOL_DOMAIN 0x46435046u
#define FC_POOL_MAX 64
/* every buffer is kept, small ones too: the workspace model counts them all */
#define FC_POOL_MIN_BYTES 1

typedef struct { void *ptr; size_t size; } fc_blk;

static pthread_mutex_t fc_mu = PTHREAD_MUTEX_INITIALIZER;
static fc_blk fc_pool[FC_POOL_MAX];   /* oldest first */
static int fc_n = 0;
static size_t fc_bytes = 0;
static unsigned long long fc_hits = 0, fc_misses = 0;

/* open: the call is running; a buffer freed after it ended (an output the
 * caller dropped) is not the call's scratch and goes back to the C library */
typedef struct { size_t cap; size_t live; int open; } fc_ctx;
typedef struct { PyDataMem_Handler h; fc_ctx c; } fc_handler;

/* remove pool entry i (under the mutex) */
static void fc_take(int i) {
    fc_bytes -= fc_pool[i].size;
    memmove(&fc_pool[i], &fc_pool[i + 1], (size_t)(fc_n - i - 1) * sizeof(fc_blk));
    fc_n--;
}

/* evict oldest entries (under the mutex) until fc_bytes <= keep; victims go to out */
static int fc_evict(size_t keep, fc_blk *out) {
    int k = 0;
    while (fc_n > 0 && fc_bytes > keep) {
        out[k++] = fc_pool[0];
        fc_take(0);
    }
    return k;
}

static void fc_release(fc_blk *v, int k) {
    for (int i = 0; i < k; i++) {
        PyTraceMalloc_Untrack(FC_POOL_DOMAIN, (uintptr_t)v[i].ptr);
        free(v[i].ptr);
    }
}

/* *hit = 1 when the buffer came from the pool (its contents are stale) */
static void *fc_get(fc_ctx *c, size_t sz, int *hit) {
    fc_blk victims[FC_POOL_MAX];
    int k = 0, i;
    void *p = NULL;
    *hit = 0;
    pthread_mutex_lock(&fc_mu);
    for (i = fc_n - 1; i >= 0; i--) {
        if (fc_pool[i].size == sz) {
            p = fc_pool[i].ptr;
            fc_take(i);
            *hit = 1;
            break;
        }
    }
    if (*hit) {
        fc_hits++;
    } else {
        if (sz >= FC_POOL_MIN_BYTES) fc_misses++;
        size_t room = c->cap > c->live + sz ? c->cap - c->live - sz : 0;
        k = fc_evict(room, victims);
    }
    c->live += sz;
    pthread_mutex_unlock(&fc_mu);
    fc_release(victims, k);
    if (*hit) {
        PyTraceMalloc_Untrack(FC_POOL_DOMAIN, (uintptr_t)p);
    }
    return p;
}

static void fc_unlive(fc_ctx *c, size_t sz) {
    pthread_mutex_lock(&fc_mu);
    c->live = c->live > sz ? c->live - sz : 0;
    pthread_mutex_unlock(&fc_mu);
}

/* Large blocks on 2 MiB boundaries, advised as transparent huge pages, as
 * NumPy's own allocator advises arrays of 4 MiB and more: the transforms walk
 * big arrays with large strides, and on 4 KiB pages the TLB misses cost more
 * than the kept buffers save. */
#define FC_HUGE_MIN ((size_t)4 << 20)
#define FC_HUGE_ALIGN ((size_t)2 << 20)

static void *fc_fresh(size_t sz) {
    void *p = NULL;
    if (sz < FC_HUGE_MIN) return malloc(sz ? sz : 1);
#ifdef _WIN32
    return malloc(sz);
#else
    if (posix_memalign(&p, FC_HUGE_ALIGN, sz) != 0) return NULL;
#endif
#ifdef MADV_HUGEPAGE
    /* only the block's own whole huge pages: rounding up would advise the
     * memory after it, which belongs to other allocations or mappings */
    madvise(p, sz & ~(FC_HUGE_ALIGN - 1), MADV_HUGEPAGE);
#endif
    return p;
}

static void *fc_malloc(void *ctx, size_t sz) {
    int hit;
    void *p = fc_get((fc_ctx *)ctx, sz, &hit);
    if (!hit) {
        p = fc_fresh(sz);
        if (!p) fc_unlive((fc_ctx *)ctx, sz);
    }
    return p;
}

static void *fc_calloc(void *ctx, size_t n, size_t sz) {
    int hit;
    if (sz && n > ((size_t)-1) / sz) return NULL;
    void *p = fc_get((fc_ctx *)ctx, n * sz, &hit);
    if (hit) {
        memset(p, 0, n * sz);
    } else if (n * sz < FC_HUGE_MIN) {
        p = calloc(n ? n : 1, sz ? sz : 1);
        if (!p) fc_unlive((fc_ctx *)ctx, n * sz);
    } else {
        p = fc_fresh(n * sz);
        if (p) memset(p, 0, n * sz);
        else fc_unlive((fc_ctx *)ctx, n * sz);
    }
    return p;
}

static void *fc_realloc(void *ctx, void *ptr, size_t sz) {
    /* NumPy does not pass the old size: the live count may drift by the
     * difference (it only loosens eviction; realloc of data is rare here) */
    (void)ctx;
    return realloc(ptr, sz ? sz : 1);
}

static void fc_free(void *ctx, void *ptr, size_t sz) {
    fc_ctx *c = (fc_ctx *)ctx;
    int keep = 0;
    if (!ptr) return;
    pthread_mutex_lock(&fc_mu);
    c->live = c->live > sz ? c->live - sz : 0;
    if (c->open && sz >= FC_POOL_MIN_BYTES && fc_n < FC_POOL_MAX && fc_bytes + c->live + sz <= c->cap) {
        fc_pool[fc_n].ptr = ptr;
        fc_pool[fc_n].size = sz;
        fc_n++;
        fc_bytes += sz;
        keep = 1;
    }
    pthread_mutex_unlock(&fc_mu);
    if (keep) {
        PyTraceMalloc_Track(FC_POOL_DOMAIN, (uintptr_t)ptr, sz);
    } else {
        free(ptr);
    }
}

static void fc_handler_destroy(PyObject *cap) {
    free(PyCapsule_GetPointer(cap, "mem_handler"));
}

/* a new handler capsule with cap ``cap`` bytes, or NULL with an exception set */
static PyObject *fc_new_handler(size_t cap) {
    fc_handler *h = (fc_handler *)calloc(1, sizeof(fc_handler));
    if (!h) return PyErr_NoMemory();
    strncpy(h->h.name, "fastconv_fft_pool", sizeof(h->h.name) - 1);
    h->h.version = 1;
    h->c.cap = cap;
    h->c.live = 0;
    h->c.open = 1;
    h->h.allocator.ctx = &h->c;
    h->h.allocator.malloc = fc_malloc;
    h->h.allocator.calloc = fc_calloc;
    h->h.allocator.realloc = fc_realloc;
    h->h.allocator.free = fc_free;
    PyObject *c = PyCapsule_New(&h->h, "mem_handler", fc_handler_destroy);
    if (!c) free(h);
    return c;
}

/* the call of handler ``cap`` has ended: later frees bypass the pool */
static int fc_close(PyObject *cap) {
    fc_handler *h = (fc_handler *)PyCapsule_GetPointer(cap, "mem_handler");
    if (!h) return -1;
    pthread_mutex_lock(&fc_mu);
    h->c.open = 0;
    pthread_mutex_unlock(&fc_mu);
    return 0;
}

/* keep at most ``keep`` bytes in the pool */
static void fc_trim(size_t keep) {
    fc_blk victims[FC_POOL_MAX];
    pthread_mutex_lock(&fc_mu);
    int k = fc_evict(keep, victims);
    pthread_mutex_unlock(&fc_mu);
    fc_release(victims, k);
}

/* fork: the mutex is held across fork() so that the child gets it unlocked
 * and the pool consistent, whichever thread was inside a critical section
 * (they are short and never wait on anything else, so this cannot deadlock) */
static void fc_atfork_prepare(void) { pthread_mutex_lock(&fc_mu); }
static void fc_atfork_release(void) { pthread_mutex_unlock(&fc_mu); }

static int fc_pool_import(void) {
    /* registered once per process: a second prepare handler would lock the
     * (non-recursive) mutex twice and deadlock fork() */
    static int atfork_done = 0;
    import_array1(-1);
#ifndef _WIN32
    if (!atfork_done) {
        if (pthread_atfork(fc_atfork_prepare, fc_atfork_release, fc_atfork_release) != 0) {
            PyErr_SetString(PyExc_RuntimeError, "fastconv: pthread_atfork failed");
            return -1;
        }
        atfork_done = 1;
    }
#endif
    return 0;
}

#endif
