/* reserve.h - one spare descriptor per process, to keep accepting when out of descriptors.
 *
 * When accept() fails with EMFILE or ENFILE, the connection stays queued and, edge-triggered,
 * no new edge will announce it again. So the spare is closed, the oldest queued connection is
 * accepted and closed at once (its client sees a clean close instead of a hang), and the spare
 * is taken back. The spare is per process, not per thread, because descriptor numbers are per
 * process. And accepts take the lock shared while shedding takes it exclusively: otherwise
 * another thread's accept() could take the number just freed, and the spare would be lost
 * for good while every descriptor stays in use. An uncontended read lock costs tens of
 * nanoseconds against the microseconds of accept() itself. */
#ifndef FL_RESERVE_H
#define FL_RESERVE_H

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include "compat.h"

static pthread_rwlock_t fl_reserve_lock = PTHREAD_RWLOCK_INITIALIZER;
static int fl_reserve_fd = -1;

/* fl_accept() for every listener of the process: see above. */
static inline int fl_accept_shared(int lfd)
{
    pthread_rwlock_rdlock(&fl_reserve_lock);
    int fd = fl_accept(lfd);
    pthread_rwlock_unlock(&fl_reserve_lock);
    return fd;
}

/* Opens the spare if it is not open. Returns 0 or -errno. */
static inline int fl_reserve_take(void)
{
    int rc = 0;
    pthread_rwlock_wrlock(&fl_reserve_lock);
    if (fl_reserve_fd < 0) {
        fl_reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fl_reserve_fd < 0)
            rc = -errno;
    }
    pthread_rwlock_unlock(&fl_reserve_lock);
    return rc;
}

/* Sheds one queued connection of lfd using the spare. Returns 1 when one was accepted and
 * closed, -EAGAIN when none was queued, or -errno (-EMFILE when there is no spare to use). */
static inline int fl_reserve_shed(int lfd)
{
    int fd;
    pthread_rwlock_wrlock(&fl_reserve_lock);
    if (fl_reserve_fd < 0)
        fl_reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fl_reserve_fd < 0) {
        pthread_rwlock_unlock(&fl_reserve_lock);
        return -EMFILE;
    }
    close(fl_reserve_fd);
    fd = fl_accept(lfd);
    if (fd >= 0)
        close(fd);
    fl_reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC); /* may fail: retried next time */
    pthread_rwlock_unlock(&fl_reserve_lock);
    return fd >= 0 ? 1 : fd;
}

#endif
