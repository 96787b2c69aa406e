/*
 * The practical ceiling of this machine: a single-threaded, edge-triggered
 * epoll echo server in C. Raw echo (bytes back untouched), one 64 KiB buffer
 * shared by all connections, writes that the socket does not take are kept
 * per connection (and reading pauses until they are written).
 *
 *   cc -O2 -o epoll_echo bench/servers/epoll_echo.c
 *   ./epoll_echo [PORT]        # prints "listening on 0.0.0.0:PORT"; 0 = any
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_EVENTS 1024
#define BUF_SIZE 65536

struct conn {
    int fd;
    char *pending;      /* unsent reply bytes, NULL when none */
    size_t pending_len;
};

static char buf[BUF_SIZE];

static void close_conn(struct conn *c) {
    close(c->fd);
    free(c->pending);
    free(c);
}

/* Writes what the socket takes; returns -1 on error, else bytes not written. */
static ssize_t write_some(int fd, const char *data, size_t len, size_t *written) {
    *written = 0;
    while (*written < len) {
        ssize_t n = write(fd, data + *written, len - *written);
        if (n < 0) {
            if (errno == EAGAIN) break;
            if (errno == EINTR) continue;
            return -1;
        }
        *written += (size_t)n;
    }
    return (ssize_t)(len - *written);
}

static int flush_pending(struct conn *c) {
    size_t written;
    ssize_t left = write_some(c->fd, c->pending, c->pending_len, &written);
    if (left < 0) return -1;
    if (left == 0) {
        free(c->pending);
        c->pending = NULL;
        c->pending_len = 0;
    } else {
        memmove(c->pending, c->pending + written, (size_t)left);
        c->pending_len = (size_t)left;
    }
    return 0;
}

/* Reads until EAGAIN, echoing each read; returns -1 when the conn should close. */
static int on_readable(struct conn *c) {
    while (c->pending == NULL) {
        ssize_t n = read(c->fd, buf, BUF_SIZE);
        if (n == 0) return -1;
        if (n < 0) {
            if (errno == EAGAIN) return 0;
            if (errno == EINTR) continue;
            return -1;
        }
        size_t written;
        ssize_t left = write_some(c->fd, buf, (size_t)n, &written);
        if (left < 0) return -1;
        if (left > 0) {
            c->pending = malloc((size_t)left);
            if (!c->pending) return -1;
            memcpy(c->pending, buf + written, (size_t)left);
            c->pending_len = (size_t)left;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 0;
    signal(SIGPIPE, SIG_IGN); /* a reset peer is an error return, not death */
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 4096) < 0) {
        fprintf(stderr, "error: could not listen on port %d: %s\n", port, strerror(errno));
        return 1;
    }
    socklen_t len = sizeof addr;
    getsockname(lfd, (struct sockaddr *)&addr, &len);
    printf("listening on 0.0.0.0:%d\n", ntohs(addr.sin_port));
    fflush(stdout);

    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, events, MAX_EVENTS, -1);
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c == NULL) {
                for (;;) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
                    if (fd < 0) break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *nc = calloc(1, sizeof *nc);
                    nc->fd = fd;
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                              .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            int dead = 0;
            if (events[i].events & (EPOLLERR | EPOLLHUP)) dead = 1;
            int writable = (events[i].events & EPOLLOUT) && c->pending;
            if (!dead && writable) dead = flush_pending(c) < 0;
            /* Edge-triggered: after a stall, read what arrived meanwhile. */
            if (!dead && (writable || (events[i].events & (EPOLLIN | EPOLLRDHUP))))
                dead = on_readable(c) < 0;
            if (dead) close_conn(c);
        }
    }
}
