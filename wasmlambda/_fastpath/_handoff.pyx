# cython: language_level=3
"""Cython twin of wasmlambda/kernel/_handoff_py.py: the same states, kept in
atomics so that each side can spin on them with the GIL released.

Every store the other side spins on is made after the GIL is released, so
that the spinner, once it sees it, takes a free GIL instead of sleeping on a
held one (which would cost the very wake-up the spin is there to avoid).
"""

from libc.stdint cimport uint64_t

cdef extern from *:
    """
    #include <time.h>
    #include <sched.h>
    static inline unsigned long long wl_now_ns(void) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (unsigned long long) t.tv_sec * 1000000000ull + (unsigned long long) t.tv_nsec;
    }
    static inline int wl_load(int *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline unsigned long long wl_load64(unsigned long long *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void wl_add64(unsigned long long *p) { __atomic_add_fetch(p, 1, __ATOMIC_RELEASE); }
    static inline int wl_cas(int *p, int expected, int desired) {
        return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    }
    /* Busy-wait politely: let the kernel run anything else runnable on this
       core (a client, another sandbox thread) between two looks. */
    #define wl_relax() sched_yield()
    """
    unsigned long long wl_now_ns() nogil
    int wl_load(int *p) nogil
    unsigned long long wl_load64(unsigned long long *p) nogil
    void wl_add64(unsigned long long *p) nogil
    int wl_cas(int *p, int expected, int desired) nogil
    void wl_relax() nogil

cdef enum:
    RUNNING = 0
    FINISHED = 1
    PARKED = 2


cdef class Completion:
    cdef int state

    def spin(self, unsigned long long max_ns):
        cdef unsigned long long until
        cdef int state
        with nogil:
            state = wl_load(&self.state)
            if state == RUNNING and max_ns:
                until = wl_now_ns() + max_ns
                while state == RUNNING and wl_now_ns() < until:
                    wl_relax()
                    state = wl_load(&self.state)
        return state == FINISHED

    def park(self):
        return wl_cas(&self.state, RUNNING, PARKED) != 0

    def finish(self):
        cdef int swapped
        with nogil:
            swapped = wl_cas(&self.state, RUNNING, FINISHED)
        return not swapped


cdef class Doorbell:
    cdef unsigned long long count

    @property
    def rings(self):
        return wl_load64(&self.count)

    def ring(self):
        with nogil:
            wl_add64(&self.count)

    def wait(self, unsigned long long seen, unsigned long long max_ns):
        cdef unsigned long long until
        cdef bint rung
        with nogil:
            rung = wl_load64(&self.count) != seen
            if not rung and max_ns:
                until = wl_now_ns() + max_ns
                while not rung and wl_now_ns() < until:
                    wl_relax()
                    rung = wl_load64(&self.count) != seen
        return rung
