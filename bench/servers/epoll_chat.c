/*
 * The practical ceiling for `bench chat` on this machine: a single-threaded,
 * edge-triggered epoll chat server in C that speaks just enough of the line
 * protocol (docs/PROTOCOL.md 5.1) for the benchmark. It greets on connect, answers
 * `/join ROOM` to the joiner only, and writes every other line as
 * `[#ROOM] NICK: TEXT` to each member of the sender's room, one write() per
 * member straight from the read loop: no queues, no tasks, no ids, no history,
 * no limits. What switchboard's hub does on top of that is what it costs.
 *
 *   cc -O2 -o epoll_chat bench/servers/epoll_chat.c
 *   ./epoll_chat [PORT]        # prints "listening on 0.0.0.0:PORT"; 0 = any
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
#define MAX_FDS 65536
#define LINE_MAX_LEN 8192
#define PENDING_MAX (1 << 20)

struct conn {
    int fd;
    char nick[32];
    char room[72];      /* "" until the first /join */
    char line[LINE_MAX_LEN];
    size_t line_len;    /* bytes of a partial line */
    char *pending;      /* bytes the socket did not take, NULL when none */
    size_t pending_len;
};

static struct conn *conns[MAX_FDS];
static int next_guest;
static int max_fd; /* the highest fd ever accepted */

static void close_conn(struct conn *c) {
    conns[c->fd] = NULL;
    close(c->fd);
    free(c->pending);
    free(c);
}

/* Writes what the socket takes and keeps the rest; -1 when the peer is gone
 * or too far behind. */
static int send_bytes(struct conn *c, const char *data, size_t len) {
    size_t written = 0;
    while (c->pending == NULL && written < len) {
        ssize_t n = write(c->fd, data + written, len - written);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            return -1;
        }
        written += (size_t)n;
    }
    if (written == len) return 0;
    if (c->pending_len + len - written > PENDING_MAX) return -1;
    c->pending = realloc(c->pending, c->pending_len + len - written);
    if (c->pending == NULL) return -1;
    memcpy(c->pending + c->pending_len, data + written, len - written);
    c->pending_len += len - written;
    return 0;
}

static int flush_pending(struct conn *c) {
    size_t written = 0;
    while (written < c->pending_len) {
        ssize_t n = write(c->fd, c->pending + written, c->pending_len - written);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            return -1;
        }
        written += (size_t)n;
    }
    memmove(c->pending, c->pending + written, c->pending_len - written);
    c->pending_len -= written;
    if (c->pending_len == 0) {
        free(c->pending);
        c->pending = NULL;
    }
    return 0;
}

static void broadcast(struct conn *from, const char *text, size_t len) {
    static char out[LINE_MAX_LEN + 128];
    int n = snprintf(out, sizeof out, "[#%s] %s: %.*s\n", from->room, from->nick, (int)len, text);
    if (n < 0 || (size_t)n >= sizeof out) return;
    for (int fd = 0; fd <= max_fd; fd++) {
        struct conn *c = conns[fd];
        if (c != NULL && strcmp(c->room, from->room) == 0 && send_bytes(c, out, (size_t)n) < 0)
            close_conn(c);
    }
}

/* Acts on one line; -1 when the connection has to go. */
static int on_line(struct conn *c, char *text, size_t len) {
    char reply[160];
    if (len > 0 && text[len - 1] == '\r') len--;
    if (len > 6 && strncmp(text, "/join ", 6) == 0) {
        size_t room_len = len - 6;
        if (text[6] == '#') text++, room_len--;
        if (room_len == 0 || room_len > 64) return send_bytes(c, "! bad room\n", 11);
        memcpy(c->room, text + 6, room_len);
        c->room[room_len] = '\0';
        int n = snprintf(reply, sizeof reply, "* %s joined #%s\n", c->nick, c->room);
        return send_bytes(c, reply, (size_t)n);
    }
    if (len == 0 || text[0] == '/') return 0;
    if (c->room[0] == '\0') return send_bytes(c, "! join a room first\n", 20);
    broadcast(c, text, len);
    return 0;
}

/* Reads everything available and handles each complete line; -1 at the end. */
static int on_readable(struct conn *c) {
    for (;;) {
        ssize_t n = read(c->fd, c->line + c->line_len, LINE_MAX_LEN - c->line_len);
        if (n == 0) return -1;
        if (n < 0) return (errno == EAGAIN) ? 0 : (errno == EINTR ? on_readable(c) : -1);
        c->line_len += (size_t)n;
        size_t start = 0;
        for (size_t i = c->line_len - (size_t)n; i < c->line_len; i++) {
            if (c->line[i] != '\n') continue;
            int fd = c->fd;
            if (on_line(c, c->line + start, i - start) < 0) return -1;
            if (conns[fd] != c) return 1; /* closed by a failed write to itself */
            start = i + 1;
        }
        memmove(c->line, c->line + start, c->line_len - start);
        c->line_len -= start;
        if (c->line_len == LINE_MAX_LEN) c->line_len = 0; /* over-long: dropped */
    }
}

static void accept_all(int listener, int epoll) {
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK);
        if (fd < 0) return;
        if (fd >= MAX_FDS) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->fd = fd;
        if (fd > max_fd) max_fd = fd;
        snprintf(c->nick, sizeof c->nick, "guest-%d", ++next_guest);
        conns[fd] = c;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.fd = fd};
        epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &ev);
        char welcome[96];
        int n = snprintf(welcome, sizeof welcome, "* welcome %s (fd %d) - type /help\n", c->nick, fd);
        if (send_bytes(c, welcome, (size_t)n) < 0) close_conn(c);
    }
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 0;
    signal(SIGPIPE, SIG_IGN); /* a peer gone mid-broadcast is an error return, not death */
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(listener, 4096) < 0) {
        perror("error: bind");
        return 1;
    }
    socklen_t len = sizeof addr;
    getsockname(listener, (struct sockaddr *)&addr, &len);
    printf("listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
    fflush(stdout);
    int epoll = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = listener};
    epoll_ctl(epoll, EPOLL_CTL_ADD, listener, &ev);
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(epoll, events, MAX_EVENTS, -1);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == listener) {
                accept_all(listener, epoll);
                continue;
            }
            struct conn *c = conns[fd];
            if (c == NULL) continue;
            if ((events[i].events & EPOLLOUT) && c->pending && flush_pending(c) < 0) {
                close_conn(c);
                continue;
            }
            if ((events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && on_readable(c) < 0 && conns[fd] == c)
                close_conn(c);
        }
    }
}
