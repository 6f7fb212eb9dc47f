# cython: language_level=3
"""Cython twin of wasmlambda/kernel/_handoff_py.py: the same states, kept in
atomics so that each side can spin on them with the GIL released.

Every store the other side spins on is made after the GIL is released, so
that the spinner, once it sees it, takes a free GIL instead of sleeping on a
held one (which would cost the very wake-up the spin is there to avoid).
"""

cdef extern from *:
    """
    #include <time.h>
    #include <sched.h>
    #include <poll.h>
    typedef unsigned long long wl_word;
    static inline wl_word wl_now_ns(void) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (wl_word) t.tv_sec * 1000000000ull + (wl_word) t.tv_nsec;
    }
    static inline wl_word wl_load(wl_word *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void wl_increment(wl_word *p) { __atomic_add_fetch(p, 1, __ATOMIC_RELEASE); }
    static inline int wl_swap(wl_word *p, wl_word expected, wl_word desired) {
        return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    }
    /* Whether `fd` (an epoll descriptor) has anything ready; never blocks. */
    static inline int wl_ready(int fd) {
        struct pollfd watched = {fd, POLLIN, 0};
        return fd >= 0 && poll(&watched, 1, 0) > 0;
    }
    /* The one spin loop: while *p holds `value`, for at most max_ns and
       while nothing is ready on `watch` (-1: watch nothing), look again,
       letting the kernel run anything else runnable on this core (a client,
       another sandbox thread) between two looks.  Returns *p. */
    static inline wl_word wl_wait_while(wl_word *p, wl_word value, wl_word max_ns, int watch) {
        wl_word now = wl_load(p);
        if (now != value || max_ns == 0) return now;
        wl_word until = wl_now_ns() + max_ns;
        while (now == value && wl_now_ns() < until && !wl_ready(watch)) {
            sched_yield();
            now = wl_load(p);
        }
        return now;
    }
    """
    ctypedef unsigned long long wl_word
    wl_word wl_load(wl_word *p) nogil
    void wl_increment(wl_word *p) nogil
    int wl_swap(wl_word *p, wl_word expected, wl_word desired) nogil
    wl_word wl_wait_while(wl_word *p, wl_word value, wl_word max_ns, int watch) nogil

cdef enum:
    RUNNING = 0
    FINISHED = 1
    PARKED = 2


cdef class Completion:
    cdef wl_word state

    def spin(self, wl_word max_ns, int watch=-1):
        cdef wl_word state
        with nogil:
            state = wl_wait_while(&self.state, RUNNING, max_ns, watch)
        return state == FINISHED

    def park(self):
        return wl_swap(&self.state, RUNNING, PARKED) != 0

    def finish(self):
        cdef int swapped
        with nogil:
            swapped = wl_swap(&self.state, RUNNING, FINISHED)
        return not swapped


cdef class Doorbell:
    cdef wl_word count

    @property
    def rings(self):
        return wl_load(&self.count)

    def ring(self):
        with nogil:
            wl_increment(&self.count)

    def wait(self, wl_word seen, wl_word max_ns):
        cdef wl_word count
        with nogil:
            count = wl_wait_while(&self.count, seen, max_ns, -1)
        return count != seen
