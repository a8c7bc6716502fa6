/* fdflags.h - the flags every socket of fastloop carries, set in one place for the server's
 * fl_accept (compat.h) and the load generator's fl_client_socket (loadgen/client.h). */
#ifndef FL_FDFLAGS_H
#define FL_FDFLAGS_H

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

/* Finishes a descriptor just returned by socket() or accept(); fd < 0 means that call failed
 * and errno says why. Makes it non-blocking and close-on-exec unless `atomic` says the call
 * already did (SOCK_NONBLOCK | SOCK_CLOEXEC; macOS has neither), and sets SO_NOSIGPIPE where
 * it exists, since send() there has no MSG_NOSIGNAL. Returns fd, or -errno (after closing
 * fd): the caller gets a usable descriptor or none. */
static inline int fl_finish_socket(int fd, int atomic)
{
    if (fd < 0)
        return errno ? -errno : -EINVAL;
    if (!atomic &&
        (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)) {
        int err = errno;
        close(fd);
        return -err;
    }
#ifdef SO_NOSIGPIPE
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
    return fd;
}

#endif
