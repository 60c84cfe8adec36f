/*
 * udpgen: a closed-loop load generator for Satchel's inbox datagrams (UDP).
 *
 * One process, one thread, one epoll loop, loopback only. It plays
 * --inboxes x --senders senders; sender i writes message id (--id-base + i)
 * of inbox (i mod inboxes), each from its own UDP socket (its own source
 * port), with at most one request outstanding. Every request is encoded
 * afresh - new timestamp, new nonce, a revision "#" one higher than the
 * sender's last, and its HMAC-SHA256 tag (the layout of README.md "Inbox
 * datagrams (UDP)"; SHA-256 and HMAC are implemented here, no libcrypto).
 * An answer counts when it is 30 bytes, carries the outstanding request's
 * nonce and its tag verifies under the inbox's key; then the sender sends
 * its next request at once. The senders start one after another over
 * --ramp seconds. A request unanswered after --timeout ms is counted lost,
 * and its sender sends a new one (as a client resends: new timestamp and
 * nonce) after a random pause of up to a quarter of the timeout; a late
 * answer to a lost request is counted as late, never as an acknowledgement.
 * "sent" and "lost" count the requests sent in the measured window; the
 * "_total" figures include the warmup.
 *
 *   udpgen run --port P --tokens W1,W2,... --senders S [options]
 *   udpgen encode TOKEN MSGID TIMESTAMP_MS NONCE_HEX JSON   (prints the request in hex; a self-test)
 *
 * Bounded: --warmup + --duration seconds of load (and at most --max-requests
 * requests), then a drain of --timeout ms, and a stall guard. One JSON
 * object on stdout, with each sender's highest acknowledged revision, so
 * that the runner can check that every acknowledged merge survived.
 * Build: cc -O2 -o udpgen udpgen.c
 */
#define _GNU_SOURCE
#define BENCH_NAME "udpgen"
#include "benchcommon.h" /* clocks, CPU, the histogram (no websocket here) */

/* --- SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104) ------------------------ */

typedef struct {
    uint32_t h[8];
    uint64_t bytes;
    uint8_t buf[64];
    size_t n;
} sha256_ctx;

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t h[8], const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = hh + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        hh = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
}

static void sha256_init(sha256_ctx *c) {
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, iv, sizeof iv);
    c->bytes = 0;
    c->n = 0;
}

static void sha256_update(sha256_ctx *c, const uint8_t *p, size_t len) {
    c->bytes += len;
    if (c->n) {
        size_t take = 64 - c->n < len ? 64 - c->n : len;
        memcpy(c->buf + c->n, p, take);
        c->n += take; p += take; len -= take;
        if (c->n < 64) return;
        sha256_block(c->h, c->buf);
        c->n = 0;
    }
    for (; len >= 64; p += 64, len -= 64) sha256_block(c->h, p);
    memcpy(c->buf, p, len);
    c->n = len;
}

static void sha256_final(sha256_ctx *c, uint8_t out[32]) {
    uint64_t bits = c->bytes * 8;
    uint8_t pad = 0x80, zero = 0, len[8];
    sha256_update(c, &pad, 1);
    while (c->n != 56) sha256_update(c, &zero, 1);
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha256_update(c, len, 8);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = c->h[i] >> 24; out[4 * i + 1] = c->h[i] >> 16; out[4 * i + 2] = c->h[i] >> 8; out[4 * i + 3] = c->h[i];
    }
}

/* The key's inner and outer states, computed once per key (keys here are 32 bytes). */
typedef struct { sha256_ctx inner, outer; } hmac_key;

static void hmac_init(hmac_key *k, const uint8_t *key, size_t key_len) {
    uint8_t block[64] = {0};
    memcpy(block, key, key_len); /* key_len <= 64 */
    uint8_t ipad[64], opad[64];
    for (int i = 0; i < 64; i++) { ipad[i] = block[i] ^ 0x36; opad[i] = block[i] ^ 0x5c; }
    sha256_init(&k->inner); sha256_update(&k->inner, ipad, 64);
    sha256_init(&k->outer); sha256_update(&k->outer, opad, 64);
}

static void hmac2(const hmac_key *k, const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len, uint8_t out[32]) {
    sha256_ctx c = k->inner;
    uint8_t inner[32];
    sha256_update(&c, a, a_len);
    if (b_len) sha256_update(&c, b, b_len);
    sha256_final(&c, inner);
    c = k->outer;
    sha256_update(&c, inner, 32);
    sha256_final(&c, out);
}

/* --- the protocol ------------------------------------------------------------- */

#define HEADER 46
#define TAG 32
#define ANSWER 30
#define MAX_BODY 256

typedef struct {
    uint8_t id[16];
    hmac_key key;
} inbox_t;

typedef struct {
    int fd;
    int inbox;
    uint8_t msg_id[8];
    uint64_t rev;           /* the revision of the last request sent */
    uint64_t acked_rev;     /* the highest revision answered "M" */
    uint64_t answers;       /* authentic answers received */
    int outstanding;
    int in_window;          /* the outstanding request was sent in the measured window */
    uint64_t next_ns;       /* a send scheduled for then (0: none) */
    uint8_t nonce[8];
    uint8_t tag[TAG];
    uint64_t sent_ns;
} sender_t;

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int parse_hex(const char *s, uint8_t *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 * i]), lo = hi < 0 ? -1 : hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return s[2 * n] == 0 || s[2 * n] == ',' ? 0 : -1;
}

static void derive(const uint8_t token[16], inbox_t *inbox) {
    static const char id_label[] = "satchel-inbox-id", key_label[] = "satchel-inbox-key";
    uint8_t digest[32];
    sha256_ctx c;
    sha256_init(&c);
    sha256_update(&c, (const uint8_t *)id_label, sizeof id_label - 1);
    sha256_update(&c, token, 16);
    sha256_final(&c, digest);
    memcpy(inbox->id, digest, 16);
    sha256_init(&c);
    sha256_update(&c, (const uint8_t *)key_label, sizeof key_label - 1);
    sha256_update(&c, token, 16);
    sha256_final(&c, digest);
    hmac_init(&inbox->key, digest, 32);
}

static void put_be64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (56 - 8 * i));
}

/* Request bytes into out (at least HEADER + MAX_BODY + TAG); returns the length. */
static size_t encode(const inbox_t *inbox, const uint8_t msg_id[8], uint64_t ts_ms, const uint8_t nonce[8],
                     const char *body, size_t body_len, uint8_t *out) {
    memcpy(out, "SINB", 4);
    out[4] = 1;
    out[5] = 'A';
    memcpy(out + 6, inbox->id, 16);
    put_be64(out + 22, ts_ms);
    memcpy(out + 30, nonce, 8);
    memcpy(out + 38, msg_id, 8);
    memcpy(out + HEADER, body, body_len);
    hmac2(&inbox->key, out, HEADER + body_len, NULL, 0, out + HEADER + body_len);
    return HEADER + body_len + TAG;
}

/* --- the load ------------------------------------------------------------------ */

static bench_hist_t hist;

static uint64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000ull + (uint64_t)ts.tv_nsec / 1000000ull;
}

static int opt_server_pid = 0;

static uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static inbox_t *inboxes;
static sender_t *senders;
static int n_inboxes = 0, n_senders = 0;
static uint64_t nonce_seed, nonce_counter = 0;
static int sending = 0, measuring = 0;
static uint64_t sent = 0, max_requests = 0, send_errors = 0, window_sent = 0, window_lost = 0;
static uint64_t answered = 0, window_answered = 0, window_merged = 0, timed_out = 0, late = 0, bad = 0;
static uint64_t codes[4]; /* M N B T */
static uint64_t timeout_ns = 1000000000ull;
static uint64_t last_answer_ns = 0;

static void send_next(sender_t *s) {
    if (!sending || (max_requests && sent >= max_requests)) return;
    uint8_t out[HEADER + MAX_BODY + TAG];
    char body[MAX_BODY];
    s->rev++;
    int body_len = snprintf(body, sizeof body, "{\"#\":%llu,\"type\":\"temperature\",\"value\":21.1,\"sensor\":%d}",
                            (unsigned long long)s->rev, (int)(s - senders));
    put_be64(s->nonce, splitmix64(nonce_seed + nonce_counter++));
    size_t len = encode(&inboxes[s->inbox], s->msg_id, wall_ms(), s->nonce, body, (size_t)body_len, out);
    memcpy(s->tag, out + len - TAG, TAG);
    s->sent_ns = bench_now_ns();
    s->outstanding = 1;
    s->in_window = measuring;
    window_sent += measuring;
    sent++;
    if (send(s->fd, out, len, MSG_DONTWAIT) != (ssize_t)len) send_errors++; /* counted lost at its timeout */
}

static void on_answer(sender_t *s, const uint8_t *a, ssize_t n, uint64_t now) {
    if (n != ANSWER || memcmp(a, "SINB", 4) != 0 || a[4] != 1) { bad++; return; }
    if (!s->outstanding || memcmp(a + 6, s->nonce, 8) != 0) { late++; return; }
    uint8_t tag[32];
    hmac2(&inboxes[s->inbox].key, a, 14, s->tag, TAG, tag);
    if (memcmp(tag, a + 14, 16) != 0) { bad++; return; }
    s->outstanding = 0;
    s->answers++;
    answered++;
    last_answer_ns = now;
    const char *code_chars = "MNBT";
    const char *c = strchr(code_chars, a[5]);
    if (c && *c) codes[c - code_chars]++;
    if (a[5] == 'M' && s->rev > s->acked_rev) s->acked_rev = s->rev;
    if (measuring) {
        window_answered++;
        if (a[5] == 'M') window_merged++;
        bench_hist_record(&hist, now - s->sent_ns);
    }
    send_next(s);
}

/* Every few ms: requests unanswered for the timeout are lost, and their
 * senders send a new one after a random pause of up to a quarter of the
 * timeout (so that senders that lost their requests together do not resend
 * in lockstep, as no real fleet would); scheduled sends go out. */
static void tick(uint64_t now) {
    for (int i = 0; i < n_senders; i++) {
        sender_t *s = &senders[i];
        if (s->outstanding && now - s->sent_ns > timeout_ns) {
            s->outstanding = 0;
            timed_out++;
            window_lost += s->in_window;
            s->next_ns = now + splitmix64(nonce_seed ^ ~nonce_counter++) % (timeout_ns / 4 + 1);
        }
        if (!s->outstanding && s->next_ns && now >= s->next_ns) {
            s->next_ns = 0;
            send_next(s);
        }
    }
}

static int epfd;

static void loop_once(int wait_ms) {
    struct epoll_event events[256];
    uint8_t buf[64];
    int n = epoll_wait(epfd, events, 256, wait_ms);
    uint64_t now = bench_now_ns();
    for (int e = 0; e < n; e++) {
        sender_t *s = &senders[events[e].data.u32];
        for (;;) {
            ssize_t got = recv(s->fd, buf, sizeof buf, MSG_DONTWAIT);
            if (got < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) break;
                if (errno == EINTR) continue;
                send_errors++; /* e.g. ECONNREFUSED: an ICMP error of an earlier send */
                break;
            }
            on_answer(s, buf, got, now);
        }
    }
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void usage(void) {
    fprintf(stderr, "usage: udpgen run --port P --tokens W1,W2,... --senders S [--id-base N] [--warmup s] "
                    "[--duration s] [--timeout ms] [--max-requests N] [--stall s] [--server-pid PID]\n"
                    "       udpgen encode TOKEN MSGID TIMESTAMP_MS NONCE_HEX JSON\n");
    exit(2);
}

static int cmd_encode(int argc, char **argv) {
    if (argc != 7) usage();
    uint8_t token[16], msg_id[8], nonce[8], out[HEADER + 4096 + TAG];
    if (parse_hex(argv[2], token, 16) || parse_hex(argv[3], msg_id, 8) || parse_hex(argv[5], nonce, 8)) usage();
    size_t body_len = strlen(argv[6]);
    if (body_len > 4096) usage();
    inbox_t inbox;
    derive(token, &inbox);
    size_t len = encode(&inbox, msg_id, strtoull(argv[4], NULL, 10), nonce, argv[6], body_len, out);
    for (size_t i = 0; i < len; i++) printf("%02x", out[i]);
    printf("\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "encode") == 0) return cmd_encode(argc, argv);
    if (argc < 2 || strcmp(argv[1], "run") != 0) usage();
    int port = 0, per_inbox = 1;
    uint64_t id_base = 0;
    double warmup = 1, duration = 5, stall = 5, ramp = 0.2;
    const char *tokens = NULL;
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--port")) port = atoi(v);
        else if (!strcmp(k, "--tokens")) tokens = v;
        else if (!strcmp(k, "--senders")) per_inbox = atoi(v);
        else if (!strcmp(k, "--id-base")) id_base = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--warmup")) warmup = atof(v);
        else if (!strcmp(k, "--duration")) duration = atof(v);
        else if (!strcmp(k, "--timeout")) timeout_ns = (uint64_t)(atof(v) * 1e6);
        else if (!strcmp(k, "--max-requests")) max_requests = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--stall")) stall = atof(v);
        else if (!strcmp(k, "--ramp")) ramp = atof(v);
        else if (!strcmp(k, "--server-pid")) opt_server_pid = atoi(v);
        else usage();
    }
    if (!port || !tokens || per_inbox < 1 || duration <= 0 || duration > 600 || warmup < 0 || warmup > 60) usage();
    n_inboxes = (int)(strlen(tokens) + 1) / 33;
    if (n_inboxes < 1 || (int)strlen(tokens) != n_inboxes * 33 - 1 || n_inboxes * per_inbox > 4096) usage();
    n_senders = n_inboxes * per_inbox;
    inboxes = calloc(n_inboxes, sizeof *inboxes);
    senders = calloc(n_senders, sizeof *senders);
    for (int i = 0; i < n_inboxes; i++) {
        uint8_t token[16];
        if (parse_hex(tokens + 33 * i, token, 16)) usage();
        derive(token, &inboxes[i]);
    }
    uint64_t seed = 0;
    FILE *urandom = fopen("/dev/urandom", "rb");
    if (!urandom || fread(&seed, sizeof seed, 1, urandom) != 1) seed = bench_now_ns() ^ (uint64_t)getpid() << 32;
    if (urandom) fclose(urandom);
    nonce_seed = seed;
    bench_hist_init(&hist);

    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    epfd = epoll_create1(0);
    for (int i = 0; i < n_senders; i++) {
        sender_t *s = &senders[i];
        s->inbox = i % n_inboxes;
        put_be64(s->msg_id, id_base + (uint64_t)i);
        s->fd = socket(AF_INET, SOCK_DGRAM, 0);
        if (s->fd < 0 || connect(s->fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
            fprintf(stderr, "udpgen: socket %d: %s\n", i, strerror(errno));
            return 2;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(epfd, EPOLL_CTL_ADD, s->fd, &ev);
    }

    /* warmup, then the measured window, then a drain of one timeout */
    uint64_t t0 = bench_now_ns(), ramp_ns = (uint64_t)(ramp * 1e9);
    uint64_t t_measure = t0 + (uint64_t)(warmup * 1e9), t_end = t_measure + (uint64_t)(duration * 1e9);
    uint64_t last_tick = t0;
    bench_window_t w = {0};
    int stalled = 0;
    last_answer_ns = t0;
    sending = 1;
    /* the senders start one after another over the ramp, not in one burst */
    for (int i = 0; i < n_senders; i++) senders[i].next_ns = t0 + 1 + ramp_ns * (uint64_t)i / (uint64_t)n_senders;
    tick(t0 + 1);
    for (;;) {
        loop_once(5);
        uint64_t now = bench_now_ns();
        if (!w.t0 && now >= t_measure) {
            measuring = 1;
            bench_window_open(&w, opt_server_pid, now);
        }
        if (w.t0 && now >= t_end) break;
        if (now - last_tick > 2000000ull) {
            tick(now);
            last_tick = now;
        }
        if (now - last_answer_ns > (uint64_t)(stall * 1e9)) { stalled = 1; break; }
        if (max_requests && sent >= max_requests) {
            int any = 0;
            for (int i = 0; i < n_senders && !any; i++) any = senders[i].outstanding;
            if (!any) break;
        }
    }
    uint64_t stop = bench_now_ns();
    if (!w.t0) bench_window_open(&w, opt_server_pid, stop); /* stopped before the window: an empty one */
    bench_window_close(&w, stop);
    measuring = 0;
    sending = 0;
    uint64_t drain_end = bench_now_ns() + timeout_ns;
    for (;;) {
        int any = 0;
        for (int i = 0; i < n_senders && !any; i++) any = senders[i].outstanding;
        if (!any || bench_now_ns() >= drain_end) break;
        loop_once(5);
    }
    uint64_t unanswered = 0, never_answered = 0;
    for (int i = 0; i < n_senders; i++) window_lost += senders[i].outstanding && senders[i].in_window;
    uint64_t *answers = calloc((unsigned)n_senders, sizeof *answers);
    for (int i = 0; i < n_senders; i++) {
        unanswered += senders[i].outstanding;
        never_answered += senders[i].answers == 0;
        answers[i] = senders[i].answers;
    }
    qsort(answers, n_senders, sizeof *answers, cmp_u64);

    double wall = bench_window_s(&w);
    printf("{\"mode\":\"udp\",\"inboxes\":%d,\"senders_per_inbox\":%d,\"senders\":%d,\"window_s\":%.3f,"
           "\"merged_per_s\":%.1f,\"answered_per_s\":%.1f,",
           n_inboxes, per_inbox, n_senders, wall, wall ? window_merged / wall : 0, wall ? window_answered / wall : 0);
    bench_print_latency("latency_us", &hist);
    printf(",\"sent\":%llu,\"lost\":%llu,\"sent_total\":%llu,\"answered_total\":%llu,\"lost_total\":%llu,"
           "\"timed_out\":%llu,\"unanswered_at_end\":%llu,"
           "\"late_answers\":%llu,\"bad_answers\":%llu,\"send_errors\":%llu,"
           "\"codes\":{\"M\":%llu,\"N\":%llu,\"B\":%llu,\"T\":%llu},\"stalled\":%s,"
           "\"senders_never_answered\":%llu,\"answers_per_sender\":{\"min\":%llu,\"median\":%llu,\"max\":%llu},"
           "\"loadgen_cpu\":%.3f,\"server_cpu\":%.3f,\"acked_revisions\":[",
           (unsigned long long)window_sent, (unsigned long long)window_lost, (unsigned long long)sent,
           (unsigned long long)answered, (unsigned long long)(timed_out + unanswered),
           (unsigned long long)timed_out, (unsigned long long)unanswered, (unsigned long long)late,
           (unsigned long long)bad, (unsigned long long)send_errors, (unsigned long long)codes[0],
           (unsigned long long)codes[1], (unsigned long long)codes[2], (unsigned long long)codes[3],
           stalled ? "true" : "false", (unsigned long long)never_answered, (unsigned long long)answers[0],
           (unsigned long long)answers[n_senders / 2], (unsigned long long)answers[n_senders - 1],
           bench_own_cpu(&w), bench_server_cpu(&w));
    for (int i = 0; i < n_senders; i++) printf("%s%llu", i ? "," : "", (unsigned long long)senders[i].acked_rev);
    printf("]}\n");
    return 0;
}
