/*
 * benchcommon.h: what every bench load generator (loadgen, siogen, dirgen,
 * resgen, udpgen) needs beside its protocol - clocks, CPU counters and the
 * measured window's CPU shares, the latency histogram, command-line and
 * JSON output helpers, the nonblocking TCP/epoll plumbing and the HTTP/1.1
 * answer parser of the REST writers.
 *
 * Header-only (static functions) for single-file programs: define
 * BENCH_NAME (the program's name, for its error messages) before including
 * it. No state but what a caller owns.
 */
#ifndef SATCHEL_BENCHCOMMON_H
#define SATCHEL_BENCHCOMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#ifndef BENCH_NAME
#error "define BENCH_NAME (the program's name) before including benchcommon.h"
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static inline void bench_die(const char *what) {
    fprintf(stderr, BENCH_NAME ": %s: %s\n", what, strerror(errno));
    exit(2);
}

/* --- clocks and CPU ------------------------------------------------------------- */

static inline uint64_t bench_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint64_t bench_wall_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline double bench_cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* user + system seconds of process pid, every thread (0: none) */
static inline double bench_process_cpu_seconds(int pid) {
    if (!pid) return 0;
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return 0;
    unsigned long utime = 0, stime = 0;
    /* after ") ": state(3) ... utime is field 14, stime 15 */
    int field = 2;
    for (char *q = p + 1; *q; q++) {
        if (*q == ' ') {
            field++;
            if (field == 14) utime = strtoul(q + 1, NULL, 10);
            if (field == 15) { stime = strtoul(q + 1, NULL, 10); break; }
        }
    }
    return (double)(utime + stime) / sysconf(_SC_CLK_TCK);
}

/* the machine's busy seconds (every process), from /proc/stat */
static inline double bench_machine_busy_seconds(void) {
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return 0;
    unsigned long long v[10] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
                   &v[5], &v[6], &v[7], &v[8], &v[9]);
    fclose(f);
    if (n < 4) return 0;
    /* user nice system idle iowait irq softirq steal (guest time is inside user) */
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / sysconf(_SC_CLK_TCK);
}

/*
 * The measured window: its bounds and the CPU counters at each end - this
 * process's, the server's (pid, 0: none) and the machine's - so that the
 * result shows each as a share of one core over the window.
 */
typedef struct {
    int pid;
    uint64_t t0, t1;
    double own0, own1, server0, server1, machine0, machine1;
} bench_window_t;

static inline void bench_window_open(bench_window_t *w, int pid, uint64_t now) {
    w->pid = pid;
    w->t0 = now;
    w->own0 = bench_cpu_seconds();
    w->server0 = bench_process_cpu_seconds(pid);
    w->machine0 = bench_machine_busy_seconds();
}

static inline void bench_window_close(bench_window_t *w, uint64_t now) {
    w->t1 = now;
    w->own1 = bench_cpu_seconds();
    w->server1 = bench_process_cpu_seconds(w->pid);
    w->machine1 = bench_machine_busy_seconds();
}

/* seconds, 0 if the window never opened or closed */
static inline double bench_window_s(const bench_window_t *w) { return w->t0 && w->t1 ? (w->t1 - w->t0) / 1e9 : 0; }

static inline double bench_own_cpu(const bench_window_t *w) {
    double s = bench_window_s(w);
    return s ? (w->own1 - w->own0) / s : 0;
}

/* -1: no server pid (or no window) */
static inline double bench_server_cpu(const bench_window_t *w) {
    double s = bench_window_s(w);
    return s && w->pid ? (w->server1 - w->server0) / s : -1;
}

/* every other process on the machine */
static inline double bench_other_cpu(const bench_window_t *w) {
    double s = bench_window_s(w), server = bench_server_cpu(w);
    return s ? (w->machine1 - w->machine0) / s - bench_own_cpu(w) - (server > 0 ? server : 0) : 0;
}

/*
 * A closed loop's run: warmup_s of load, then the measured window of
 * duration_s (*w: its bounds and CPU counters), stopping early on a stall
 * (no progress for stall_s) or when done() says so. more() sends what the
 * closed loop allows; *measuring is 1 while the window is open; edge(1)
 * and edge(0) run as it opens and closes (a program's own counters).
 */
typedef struct {
    double warmup_s, duration_s, stall_s; /* stall_s <= 0: no stall guard */
    int server_pid, poll_ms;
    void (*loop_once)(int timeout_ms);
    void (*more)(void);
    int (*done)(void);      /* NULL: none */
    void (*edge)(int open); /* NULL: none */
    uint64_t *last_progress_ns;
    int *measuring;
} bench_run_t;

/* returns 1 if the run stalled */
static inline int bench_run(const bench_run_t *r, bench_window_t *w) {
    memset(w, 0, sizeof *w);
    uint64_t t0 = bench_now_ns();
    *r->last_progress_ns = t0;
    uint64_t t_measure = t0 + (uint64_t)(r->warmup_s * 1e9);
    uint64_t t_end = t_measure + (uint64_t)(r->duration_s * 1e9);
    int stalled = 0;
    r->more();
    for (;;) {
        r->loop_once(r->poll_ms);
        uint64_t now = bench_now_ns();
        if (!*r->measuring && now >= t_measure && w->t0 == 0) {
            *r->measuring = 1;
            bench_window_open(w, r->server_pid, now);
            if (r->edge) r->edge(1);
        }
        if (*r->measuring && now >= t_end) break;
        if (r->stall_s > 0 && now - *r->last_progress_ns > (uint64_t)(r->stall_s * 1e9)) { stalled = 1; break; }
        if (r->done && r->done()) break;
        r->more();
    }
    if (*r->measuring) { /* the window's end, or stopped inside it */
        *r->measuring = 0;
        bench_window_close(w, bench_now_ns());
        if (r->edge) r->edge(0);
    }
    return stalled;
}

/* after a run: up to drain_s for what is outstanding, then grace_s for late, duplicate or stray frames */
static inline void bench_drain(void (*loop_once)(int timeout_ms), const uint64_t *outstanding, double drain_s,
                               double grace_s) {
    uint64_t drain_end = bench_now_ns() + (uint64_t)(drain_s * 1e9);
    while (*outstanding && bench_now_ns() < drain_end) loop_once(20);
    uint64_t grace_end = bench_now_ns() + (uint64_t)(grace_s * 1e9);
    while (bench_now_ns() < grace_end) loop_once(20);
}

/* --- the latency histogram ------------------------------------------------------- */

#define BENCH_HIST_FINE 20000    /* 1 us buckets up to 20 ms */
#define BENCH_HIST_COARSE 100000 /* then 100 us buckets up to 10 s */

typedef struct {
    uint32_t *buckets;
    uint64_t n, max_ns;
} bench_hist_t;

static inline void bench_hist_init(bench_hist_t *h) {
    h->buckets = calloc(BENCH_HIST_FINE + BENCH_HIST_COARSE, sizeof *h->buckets);
    h->n = h->max_ns = 0;
}

static inline void bench_hist_record(bench_hist_t *h, uint64_t ns) {
    uint64_t us = ns / 1000;
    size_t i;
    if (us < BENCH_HIST_FINE) i = us;
    else {
        uint64_t c = (us - BENCH_HIST_FINE) / 100;
        if (c >= BENCH_HIST_COARSE) c = BENCH_HIST_COARSE - 1;
        i = BENCH_HIST_FINE + c;
    }
    h->buckets[i]++;
    h->n++;
    if (ns > h->max_ns) h->max_ns = ns;
}

/* microseconds: the middle of the bucket that holds the p-th sample */
static inline double bench_hist_percentile(const bench_hist_t *h, double p) {
    if (!h->n) return 0;
    uint64_t target = (uint64_t)(p * h->n);
    if (target >= h->n) target = h->n - 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < BENCH_HIST_FINE + BENCH_HIST_COARSE; i++) {
        seen += h->buckets[i];
        if (seen > target) {
            if (i < BENCH_HIST_FINE) return (double)i + 0.5;
            return BENCH_HIST_FINE + (double)(i - BENCH_HIST_FINE) * 100 + 50;
        }
    }
    return 0;
}

/* --- output ------------------------------------------------------------------------ */

/* "key":{"p50":..,"p99":..,"max":..,"samples":..} - what the Python benches read */
static inline void bench_print_latency(const char *key, const bench_hist_t *h) {
    printf("\"%s\":{\"p50\":%.1f,\"p99\":%.1f,\"max\":%.1f,\"samples\":%llu}", key, bench_hist_percentile(h, 0.50),
           bench_hist_percentile(h, 0.99), h->max_ns / 1000.0, (unsigned long long)h->n);
}

/* a JSON string of s; quotes, backslashes and control characters become ' */
static inline void bench_print_json_string(const char *s) {
    putchar('"');
    for (; *s; s++) putchar(*s == '"' || *s == '\\' || (unsigned char)*s < 32 ? '\'' : *s);
    putchar('"');
}

/* bytes as lowercase hex (a bitmap of the seqs a connection received) */
static inline void bench_print_hex(const uint8_t *p, size_t n) {
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        putchar(hex[p[i] >> 4]);
        putchar(hex[p[i] & 15]);
    }
}

/* keep the first sample of a frame nobody expected (once: out stays set), JSON-safe */
static inline void bench_keep_first(char *out, size_t cap, const uint8_t *p, size_t n) {
    if (out[0]) return;
    size_t k = n < cap - 1 ? n : cap - 1;
    for (size_t i = 0; i < k; i++) out[i] = (p[i] == '"' || p[i] == '\\' || p[i] < 32) ? '\'' : p[i];
    out[k] = 0;
}

/* --- text --------------------------------------------------------------------------- */

/* the first occurrence of needle in p[0..n) */
static inline const uint8_t *bench_find(const uint8_t *p, size_t n, const char *needle) {
    return memmem(p, n, needle, strlen(needle));
}

static inline int bench_is_prefix(const uint8_t *p, size_t n, const char *s) {
    size_t k = strlen(s);
    return n >= k && memcmp(p, s, k) == 0;
}

/* the unsigned decimal at p (up to end); -1 if none */
static inline int64_t bench_parse_uint(const uint8_t *p, const uint8_t *end) {
    int64_t v = 0;
    int digits = 0;
    while (p < end && *p >= '0' && *p <= '9' && digits < 19) { v = v * 10 + (*p++ - '0'); digits++; }
    return digits ? v : -1;
}

/* seq as the 10 digits at dst (a body's "seq":"0000000000") */
static inline void bench_stamp_seq(char *dst, uint64_t seq) {
    char digits[11];
    snprintf(digits, sizeof digits, "%010llu", (unsigned long long)(seq % 10000000000ull));
    memcpy(dst, digits, 10);
}

static inline uint64_t bench_fnv1a(const void *data, size_t n, uint64_t h) {
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= 0x100000001b3ull; }
    return h;
}

/* the whole file, NUL-terminated; dies if it cannot be read */
static inline char *bench_read_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) bench_die(path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *data = malloc(size + 1);
    if (fread(data, 1, size, f) != (size_t)size) bench_die(path);
    data[size] = 0;
    fclose(f);
    return data;
}

/* --- the process --------------------------------------------------------------------- */

/* as many open files as the hard limit allows: one per connection */
static inline void bench_raise_nofile(void) {
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
}

/* the generators load loopback servers only */
static inline void bench_loopback_only(const char *host) {
    if (strcmp(host, "127.0.0.1") != 0 && strcmp(host, "localhost") != 0) {
        fprintf(stderr, BENCH_NAME ": loopback only\n");
        exit(2);
    }
}

/*
 * idle mode: keep the connections (loop_once serves them) until stdin
 * closes or hold_s seconds pass - the runner measures the server meanwhile
 */
static inline void bench_hold(double hold_s, void (*loop_once)(int timeout_ms)) {
    int flags = fcntl(0, F_GETFL, 0);
    fcntl(0, F_SETFL, flags | O_NONBLOCK);
    uint64_t end = bench_now_ns() + (uint64_t)(hold_s * 1e9);
    while (bench_now_ns() < end) {
        struct pollfd pf = {0, POLLIN, 0};
        if (poll(&pf, 1, 0) > 0) {
            char b[64];
            ssize_t r = read(0, b, sizeof b);
            if (r == 0 || (r < 0 && errno != EAGAIN)) break;
        }
        loop_once(100);
    }
}

/* --- TCP and epoll ------------------------------------------------------------------ */

/* a nonblocking TCP connection to 127.0.0.1:port, under way, in epfd (EPOLLIN|EPOLLOUT) with ptr */
static inline int bench_connect(int epfd, int port, void *ptr) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) bench_die("socket");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) bench_die("connect");
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = ptr};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) bench_die("epoll_ctl add");
    return fd;
}

static inline void bench_ep_mod(int epfd, int fd, void *ptr, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.ptr = ptr};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) < 0) bench_die("epoll_ctl mod");
}

static inline void bench_ep_close(int epfd, int fd) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
}

/* epoll_wait; 0 events when interrupted */
static inline int bench_wait(int epfd, struct epoll_event *events, int max, int timeout_ms) {
    int n = epoll_wait(epfd, events, max, timeout_ms);
    if (n < 0) {
        if (errno == EINTR) return 0;
        bench_die("epoll_wait");
    }
    return n;
}

/* --- the REST writers' HTTP/1.1 answers ------------------------------------------------- */

/*
 * Whether in[0..len) (NUL-terminated, cap bytes at most) begins with a
 * whole answer: 1 and its status, head (header bytes) and clen (body
 * bytes, from Content-Length); 0 if more is needed. Dies on an answer
 * that cannot fit in cap.
 */
static inline int bench_http_answer(const char *in, size_t len, size_t cap, int *status, size_t *head, size_t *clen) {
    const char *end = strstr(in, "\r\n\r\n");
    if (!end) {
        if (len >= cap - 1) { fprintf(stderr, BENCH_NAME ": REST header too long\n"); exit(2); }
        return 0;
    }
    *head = end + 4 - in;
    *clen = 0;
    for (const char *q = in; q < end; q++) {
        if ((q == in || q[-1] == '\n') && strncasecmp(q, "content-length:", 15) == 0) {
            *clen = strtoul(q + 15, NULL, 10);
            break;
        }
    }
    if (*head + *clen > cap - 1) { fprintf(stderr, BENCH_NAME ": REST answer too long\n"); exit(2); }
    if (len < *head + *clen) return 0;
    *status = atoi(in + 9);
    return 1;
}

/* drop the first n bytes of in[0..*len) */
static inline void bench_http_consume(char *in, size_t *len, size_t n) {
    memmove(in, in + n, *len - n);
    *len -= n;
    in[*len] = 0;
}

typedef void (*bench_answer_fn)(void *ctx, int status, const char *body, size_t clen);

/*
 * Read what a REST connection has into in[0..*len) (cap bytes) and hand
 * each whole answer to on_answer(ctx, status, body, body bytes). Returns 0
 * when there is nothing more to read for now, -1 when the connection is
 * closed or failed.
 */
static inline int bench_http_read(int fd, char *in, size_t *len, size_t cap, bench_answer_fn on_answer, void *ctx) {
    for (;;) {
        ssize_t n = read(fd, in + *len, cap - 1 - *len);
        if (n <= 0) return n < 0 && (errno == EAGAIN || errno == EINTR) ? 0 : -1;
        *len += n;
        in[*len] = 0;
        int status;
        size_t head, clen;
        while (bench_http_answer(in, *len, cap, &status, &head, &clen)) {
            on_answer(ctx, status, in + head, clen);
            bench_http_consume(in, len, head + clen);
        }
    }
}

/* "STATUS first bytes of the body" of the first answer that was not 2xx (out stays set) */
static inline void bench_keep_error(char *out, size_t cap, int status, const char *body, size_t clen) {
    if (!out[0]) snprintf(out, cap, "%d %.*s", status, (int)(clen < 300 ? clen : 300), body);
}

#endif
