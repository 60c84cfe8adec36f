/*
 * resgen: a load generator for the resource-subscription benches
 * (benches/README.md, "Resource subscriptions"): websocket subscribers of any
 * of Satchel's protocols - resource websockets on /realtime, Backpack
 * websockets, Directus core realtime - and, in `fanout` mode, one REST writer
 * whose writes every subscriber should receive.
 *
 * One process, one thread, one epoll loop, loopback only; built on
 * wsclient.h and benchcommon.h (the framing, clocks, histogram, epoll and
 * HTTP plumbing shared with the other generators). Frames are reassembled across reads; no JSON is decoded but
 * a few fixed keys found by substring.
 *
 * Subscribers (--conns FILE, one line per connection, tab-separated):
 *   GROUP[FLAGS] \t PATH \t HEADER \t FRAME1 \t READY1 [\t FRAME2 \t READY2]
 * GROUP is a number (reported per connection), FLAGS 'v' = check that the
 * frames' "version" strictly increases; HEADER one extra upgrade header
 * ("Cookie: ..." or "Sec-WebSocket-Protocol: ...", may be empty); after the
 * upgrade FRAME1 is sent (if not empty) and the connection waits for a
 * frame containing READY1, then FRAME2 / READY2 likewise (Directus core:
 * auth, then subscribe). Then it is ready. Core pings are answered.
 *
 * fanout: --inflight keep-alive HTTP connections, each with one request
 * outstanding: --method (PUT) --post-path with --post-headers (raw header
 * lines, \r\n separated) and the body --body, whose "seq":"0000000000" is
 * overwritten with the write's number. Closed loop: a write stays in
 * flight until its answer is back and every subscriber has it. A delivery
 * is a frame with "seq":"NNNNNNNNNN". With --answer-version, the writer
 * hashes (seq, "version" of the answer) of every 2xx answer and every
 * connection hashes (seq, "version") of every frame it received: equal sums
 * say that the connection received exactly the versions the writer was
 * told of. Per connection: a bitmap of the seqs received, duplicates,
 * versions not increasing ("reordered"), the hash.
 *
 * watch: no writer. Once every subscriber is ready, "READY" is printed on
 * stdout, and for --duration seconds every frame is scanned for
 * "k":SEQ ... "t":WALL_NS pairs (inbox messages the runner sends over UDP
 * with its send time, CLOCK_REALTIME ns): a seq a connection had not seen
 * before is a delivery, latency = receive time - t. "revision" must
 * strictly increase per connection.
 *
 * One JSON object on stdout at the end. Build: cc -O2 -o resgen resgen.c
 */
#define BENCH_NAME "resgen"
#include "wsclient.h"

#define MAX_EVENTS 1024
#define READ_SIZE (256 * 1024)
#define FRAME_MAX (1024 * 1024)
#define HTTP_IN 65536

enum { S_STEP1 = WS_OWN_STATES, S_STEP2 };

typedef struct {
    ws_conn_t ws; /* ws.path, ws.extra: PATH and HEADER */
    int group, check_version;
    char *frame1, *ready1, *frame2, *ready2;
    uint64_t received, duplicates, reordered, unparsed, hash;
    char last_version[40];
    int64_t last_revision;
    uint8_t *seen;
    /* http */
    uint64_t seq;
    char in[HTTP_IN];
    size_t in_len;
} conn_t;

static const char *opt_mode = "fanout";
static int opt_port = 0;
static const char *opt_conns_file = NULL;
static const char *opt_method = "PUT";
static const char *opt_post_path = NULL;
static const char *opt_post_headers = "";
static char *opt_body = NULL;
static int opt_answer_version = 0;
static int opt_inflight = 8;
static double opt_warmup = 1.0, opt_duration = 5.0, opt_setup_timeout = 90.0, opt_stall = 5.0, opt_drain = 5.0;
static int opt_server_pid = 0;
static int opt_concurrent_handshakes = 64;
static uint64_t opt_max_seq = 200000;

static conn_t *subs, *https;
static int nsubs;
static ws_net_t net;
static size_t body_len, body_seq_off;
static uint64_t *sent_ns;
static uint32_t *delivered;
static uint8_t *answered;
static uint64_t seq_next = 1, outstanding = 0, writer_hash = 0;
static int sending = 0, measuring = 0;
static uint64_t window_deliveries = 0, window_writes = 0, total_deliveries = 0;
static uint64_t non_2xx = 0, other_frames = 0, answers_without_version = 0;
static uint64_t last_progress_ns = 0;
static bench_hist_t hist, ack_hist;
static char first_error[512] = "", first_other[256] = "";

static void note_other(const uint8_t *p, size_t n) {
    other_frames++;
    bench_keep_first(first_other, sizeof first_other, p, n);
}

/* the string value after key (e.g. "\"version\":\""), up to its closing quote */
static int string_after(const uint8_t *p, size_t n, const char *key, const uint8_t **value, size_t *len) {
    const uint8_t *k = bench_find(p, n, key);
    if (!k) return 0;
    const uint8_t *v = k + strlen(key), *end = p + n;
    const uint8_t *q = memchr(v, '"', end - v);
    if (!q) return 0;
    *value = v;
    *len = q - v;
    return 1;
}

static uint64_t pair_hash(uint64_t seq, const uint8_t *version, size_t vlen) {
    uint64_t h = bench_fnv1a(&seq, sizeof seq, 0xcbf29ce484222325ull);
    return bench_fnv1a(version, vlen, h);
}

/* -- the closed loop (fanout) ------------------------------------------------------- */

static void maybe_complete(uint64_t seq, uint64_t now) {
    if (answered[seq] && delivered[seq] == (uint32_t)nsubs) {
        outstanding--;
        if (measuring) window_writes++;
        last_progress_ns = now;
        delivered[seq]++; /* never twice */
    }
}

static void on_delivery(conn_t *c, const uint8_t *p, size_t n, uint64_t now) {
    const uint8_t *s = bench_find(p, n, "\"seq\":\"");
    if (!s || s + 7 + 10 > p + n) { note_other(p, n); return; }
    int64_t seq = bench_parse_uint(s + 7, s + 17);
    if (seq <= 0 || (uint64_t)seq >= seq_next || !sent_ns[seq]) { c->unparsed++; return; }
    const uint8_t *version = NULL;
    size_t vlen = 0;
    int has_version = string_after(p, n, "\"version\":\"", &version, &vlen);
    if (c->check_version) {
        if (!has_version || vlen >= sizeof c->last_version) c->unparsed++;
        else {
            if (c->last_version[0] && (vlen != strlen(c->last_version) || memcmp(version, c->last_version, vlen) <= 0))
                c->reordered++;
            memcpy(c->last_version, version, vlen);
            c->last_version[vlen] = 0;
        }
    }
    if (c->seen[seq >> 3] & (1u << (seq & 7))) { c->duplicates++; return; }
    c->seen[seq >> 3] |= 1u << (seq & 7);
    if (has_version) c->hash += pair_hash(seq, version, vlen);
    c->received++;
    total_deliveries++;
    if (measuring) {
        window_deliveries++;
        bench_hist_record(&hist, now - sent_ns[seq]);
    }
    delivered[seq]++;
    maybe_complete(seq, now);
}

/* watch: inbox messages {"k":SEQ,"t":WALL_NS} inside document updates */
static void on_document(conn_t *c, const uint8_t *p, size_t n, uint64_t wall) {
    const uint8_t *end = p + n;
    const uint8_t *r = bench_find(p, n, "\"revision\":");
    if (!r) { note_other(p, n); return; }
    int64_t revision = bench_parse_uint(r + 11, end);
    if (revision <= c->last_revision) c->reordered++;
    c->last_revision = revision;
    c->received++;
    const uint8_t *q = p;
    while ((q = bench_find(q, end - q, "\"k\":")) != NULL) {
        int64_t seq = bench_parse_uint(q + 4, end);
        q += 4;
        const uint8_t *t = bench_find(q, end - q, "\"t\":");
        if (seq <= 0 || (uint64_t)seq >= opt_max_seq || !t) { c->unparsed++; continue; }
        int64_t sent = bench_parse_uint(t + 4, end);
        if (c->seen[seq >> 3] & (1u << (seq & 7))) continue; /* still in the document: not new */
        c->seen[seq >> 3] |= 1u << (seq & 7);
        total_deliveries++;
        if (measuring && sent > 0) {
            window_deliveries++;
            bench_hist_record(&hist, wall > (uint64_t)sent ? wall - (uint64_t)sent : 0);
        }
    }
}

static void step(conn_t *c, const char *frame, int next_state) {
    if (frame && *frame) {
        if (ws_send_text(c->ws.fd, frame) < 0) { ws_net_fail(&net, &c->ws, "write failed"); return; }
        c->ws.state = next_state;
    } else c->ws.state = next_state;
}

static int on_frame(void *ctx, int opcode, const uint8_t *p, size_t n, uint64_t plen) {
    conn_t *c = ctx;
    uint64_t now = net.reading.now;
    if (opcode == 8) { ws_net_fail(&net, &c->ws, "server closed the websocket"); return 1; }
    if (opcode == 9) {
        ws_pong(c->ws.fd, p, n, plen);
        return 0;
    }
    if (opcode != 1) return 0;
    if (n >= 14 && memcmp(p, "{\"type\":\"ping\"", 14) == 0) { ws_send_text(c->ws.fd, "{\"type\":\"pong\"}"); return 0; }
    if (c->ws.state == WS_READY) {
        if (strcmp(opt_mode, "watch") == 0) on_document(c, p, n, bench_wall_ns());
        else on_delivery(c, p, n, now);
        return c->ws.state == WS_CLOSED;
    }
    if (c->ws.state == S_STEP1) {
        if (!bench_find(p, n, c->ready1)) {
            char why[240];
            snprintf(why, sizeof why, "not ready (step 1): %.*s", (int)(n < 180 ? n : 180), (const char *)p);
            ws_net_fail(&net, &c->ws, why);
            return 1;
        }
        if (c->ready2 && *c->ready2) step(c, c->frame2, S_STEP2);
        else ws_net_ready(&net, &c->ws);
        return 0;
    }
    if (c->ws.state == S_STEP2) {
        if (!bench_find(p, n, c->ready2)) {
            char why[240];
            snprintf(why, sizeof why, "not ready (step 2): %.*s", (int)(n < 180 ? n : 180), (const char *)p);
            ws_net_fail(&net, &c->ws, why);
            return 1;
        }
        ws_net_ready(&net, &c->ws);
    }
    return 0;
}

/* the upgrade is done: FRAME1 (if READY1 is to be waited for), or ready at once */
static void on_open(ws_conn_t *wc) {
    conn_t *c = (conn_t *)wc;
    if (c->ready1 && *c->ready1) step(c, c->frame1, S_STEP1);
    else ws_net_ready(&net, &c->ws);
}

/* -- the HTTP writer ---------------------------------------------------------------- */

static void http_send(conn_t *h, uint64_t now) {
    uint64_t seq = seq_next++;
    bench_stamp_seq(opt_body + body_seq_off, seq);
    char req[16384];
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s%sContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     opt_method, opt_post_path, opt_port, opt_post_headers, *opt_post_headers ? "\r\n" : "", body_len,
                     opt_body);
    h->seq = seq;
    sent_ns[seq] = now;
    outstanding++;
    if (ws_write_all_small(h->ws.fd, req, n) < 0) bench_die("request write");
}

static void publish_more(void) {
    if (!sending) return;
    uint64_t now = bench_now_ns();
    for (int i = 0; i < opt_inflight && outstanding < (uint64_t)opt_inflight; i++) {
        conn_t *h = &https[i];
        if (h->ws.state == WS_READY && h->seq == 0 && seq_next < opt_max_seq) http_send(h, now);
    }
}

/* one answer of REST connection ctx */
static void on_answer(void *ctx, int status, const char *body, size_t clen) {
    conn_t *h = ctx;
    uint64_t now = bench_now_ns();
    uint64_t seq = h->seq;
    if (!seq) { fprintf(stderr, "resgen: an answer nobody asked for\n"); exit(2); }
    h->seq = 0;
    if (status >= 200 && status < 300) {
        answered[seq] = 1;
        if (opt_answer_version) {
            const uint8_t *v;
            size_t vlen;
            if (string_after((const uint8_t *)body, clen, "\"version\":\"", &v, &vlen))
                writer_hash += pair_hash(seq, v, vlen);
            else answers_without_version++;
        }
    } else {
        answered[seq] = 2;
        non_2xx++;
        bench_keep_error(first_error, sizeof first_error, status, body, clen);
        delivered[seq] = nsubs; /* nobody will receive it */
    }
    if (measuring) bench_hist_record(&ack_hist, now - sent_ns[seq]);
    maybe_complete(seq, now);
}

static void http_readable(ws_conn_t *wc) {
    conn_t *h = (conn_t *)wc;
    if (bench_http_read(h->ws.fd, h->in, &h->in_len, HTTP_IN, on_answer, h) < 0)
        ws_net_fail(&net, wc, "the REST connection closed");
}

/* -- the loop ---------------------------------------------------------------------- */

static void loop_once(int timeout_ms) { ws_net_loop_once(&net, timeout_ms); }

static uint64_t w0 = 0, w1 = 0; /* seq_next at the window's ends */

static void count_writes(int open) { *(open ? &w0 : &w1) = seq_next; }

static int writes_used_up(void) { return seq_next >= opt_max_seq && !outstanding; }

/* split line at tabs into at most max fields (empty fields kept) */
static int split_tabs(char *line, char **fields, int max) {
    int n = 0;
    fields[n++] = line;
    for (char *q = line; *q && n < max; q++)
        if (*q == '\t') { *q = 0; fields[n++] = q + 1; }
    return n;
}

static void usage(void) {
    fprintf(stderr,
            "usage: resgen fanout --port P --conns FILE --post-path PATH --body JSON [--method PUT]\n"
            "         [--post-headers 'A: b\\r\\nC: d'] [--answer-version] [--inflight K] [--warmup S] [--duration S]\n"
            "       resgen watch --port P --conns FILE [--warmup S] [--duration S] [--max-seq N]\n"
            "  [--drain S] [--server-pid PID]\n");
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 2 || (strcmp(argv[1], "fanout") != 0 && strcmp(argv[1], "watch") != 0)) usage();
    opt_mode = argv[1];
    int watch = strcmp(opt_mode, "watch") == 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (strcmp(a, name) == 0 && v && (i++, 1))
        if (OPT("--port")) opt_port = atoi(v);
        else if (OPT("--conns")) opt_conns_file = v;
        else if (OPT("--method")) opt_method = v;
        else if (OPT("--post-path")) opt_post_path = v;
        else if (OPT("--post-headers")) opt_post_headers = v;
        else if (OPT("--body")) opt_body = strdup(v);
        else if (strcmp(a, "--answer-version") == 0) opt_answer_version = 1;
        else if (OPT("--inflight")) opt_inflight = atoi(v);
        else if (OPT("--warmup")) opt_warmup = atof(v);
        else if (OPT("--duration")) opt_duration = atof(v);
        else if (OPT("--drain")) opt_drain = atof(v);
        else if (OPT("--stall")) opt_stall = atof(v);
        else if (OPT("--setup-timeout")) opt_setup_timeout = atof(v);
        else if (OPT("--server-pid")) opt_server_pid = atoi(v);
        else if (OPT("--max-seq")) opt_max_seq = strtoull(v, NULL, 10);
        else usage();
    }
    if (!opt_port || !opt_conns_file || opt_inflight < 1 || opt_inflight > 256 || opt_max_seq < 2 ||
        opt_max_seq > 10000000)
        usage();
    if (!watch && (!opt_post_path || !opt_body)) usage();
    if (opt_duration > 120 || opt_warmup > 60 || opt_drain > 60) { fprintf(stderr, "resgen: bounded runs only\n"); return 2; }
    if (!watch) {
        char *mark = strstr(opt_body, "\"seq\":\"0000000000\"");
        if (!mark) { fprintf(stderr, "resgen: the body has no \"seq\":\"0000000000\"\n"); return 2; }
        body_len = strlen(opt_body);
        body_seq_off = mark - opt_body + 7;
    }
    bench_raise_nofile();

    char *ctext = bench_read_file(opt_conns_file);
    int cap = 0;
    for (char *q = ctext; *q; q++) cap += *q == '\n';
    subs = calloc(cap + 1, sizeof *subs);
    size_t seen_bytes = opt_max_seq / 8 + 1;
    for (char *line = strtok(ctext, "\n"); line; line = strtok(NULL, "\n")) {
        char *f[7] = {0};
        int k = split_tabs(line, f, 7);
        if (k < 3) continue;
        conn_t *c = &subs[nsubs++];
        c->group = atoi(f[0]);
        c->check_version = strchr(f[0], 'v') != NULL;
        c->ws.path = f[1];
        if (*f[2]) { /* one header line */
            char *extra = malloc(strlen(f[2]) + 3);
            sprintf(extra, "%s\r\n", f[2]);
            c->ws.extra = extra;
        }
        c->last_revision = -1;
        c->frame1 = k > 3 ? f[3] : "";
        c->ready1 = k > 4 ? f[4] : "";
        c->frame2 = k > 5 ? f[5] : "";
        c->ready2 = k > 6 ? f[6] : "";
        c->seen = calloc(seen_bytes, 1);
    }
    if (nsubs < 1 || nsubs > 60000) usage();
    int nhttp = watch ? 0 : opt_inflight;
    https = calloc(nhttp + 1, sizeof *https);
    for (int i = 0; i < nhttp; i++) https[i].ws.is_http = 1;
    sent_ns = calloc(opt_max_seq + 1, sizeof *sent_ns);
    delivered = calloc(opt_max_seq + 1, sizeof *delivered);
    answered = calloc(opt_max_seq + 1, 1);
    ws_net_init(&net, opt_port, 0, FRAME_MAX, READ_SIZE);
    net.report_closes = 1;
    net.on_open = on_open;
    net.on_frame = on_frame;
    net.on_http = http_readable;
    bench_hist_init(&hist);
    bench_hist_init(&ack_hist);

    uint64_t t_setup = bench_now_ns();
    ws_net_setup(&net, https, nhttp, subs, nsubs, sizeof *subs, opt_concurrent_handshakes, opt_setup_timeout);
    double setup_s = (bench_now_ns() - t_setup) / 1e9;
    if (net.ready < nsubs + nhttp) {
        printf("{\"mode\":\"%s\",\"error\":\"setup failed\",\"ready\":%d,\"failed\":%d,\"wanted\":%d}\n", opt_mode,
               net.ready, net.failed, nsubs + nhttp);
        return 1;
    }
    if (watch) { printf("READY\n"); fflush(stdout); }

    sending = !watch;
    bench_run_t run = {.warmup_s = opt_warmup, .duration_s = opt_duration, .stall_s = watch ? 0 : opt_stall,
                       .server_pid = opt_server_pid, .poll_ms = watch ? 5 : 20, .loop_once = loop_once,
                       .more = publish_more, .done = watch ? NULL : writes_used_up, .edge = count_writes,
                       .last_progress_ns = &last_progress_ns, .measuring = &measuring};
    bench_window_t w;
    int stalled = bench_run(&run, &w);
    sending = 0;
    bench_drain(loop_once, &outstanding, opt_drain, 0.3); /* watch: nothing outstanding, only the grace */

    uint64_t sent = watch ? 0 : seq_next - 1;
    uint64_t answered_ok = 0;
    for (uint64_t s = 1; s <= sent; s++) answered_ok += answered[s] == 1;
    uint64_t expected = answered_ok * nsubs;
    uint64_t lost = expected > total_deliveries ? expected - total_deliveries : 0;
    uint64_t duplicates = 0, reordered = 0, unparsed = 0;
    int open_subs = 0;
    for (int i = 0; i < nsubs; i++) {
        duplicates += subs[i].duplicates;
        reordered += subs[i].reordered;
        unparsed += subs[i].unparsed;
        open_subs += subs[i].ws.state == WS_READY;
    }
    double wall = bench_window_s(&w);
    printf("{\"mode\":\"%s\",\"subscribers\":%d,\"inflight\":%d,\"setup_s\":%.3f,\"window_s\":%.3f,"
           "\"writes_per_s\":%.1f,\"deliveries_per_s\":%.1f,\"window_writes_sent\":%llu,",
           opt_mode, nsubs, nhttp, setup_s, wall, wall ? window_writes / wall : 0, wall ? window_deliveries / wall : 0,
           (unsigned long long)(w1 - w0));
    bench_print_latency("latency_us", &hist);
    putchar(',');
    bench_print_latency("write_latency_us", &ack_hist);
    printf(",\"sent\":%llu,\"answered_2xx\":%llu,\"non_2xx\":%llu,\"first_error\":", (unsigned long long)sent,
           (unsigned long long)answered_ok, (unsigned long long)non_2xx);
    bench_print_json_string(first_error);
    printf(",\"expected_deliveries\":%llu,\"delivered\":%llu,\"lost\":%llu,\"duplicates\":%llu,\"reordered\":%llu,"
           "\"unparsed\":%llu,\"other_frames\":%llu,\"first_other_frame\":",
           (unsigned long long)expected, (unsigned long long)total_deliveries, (unsigned long long)lost,
           (unsigned long long)duplicates, (unsigned long long)reordered, (unsigned long long)unparsed,
           (unsigned long long)other_frames);
    bench_print_json_string(first_other);
    printf(",\"oversize\":%llu,\"closed_by_server\":%llu,\"open_subscribers\":%d,\"stalled\":%s,"
           "\"answers_without_version\":%llu,\"writer_hash\":\"%016llx\","
           "\"loadgen_cpu\":%.3f,\"server_cpu\":%.3f,\"other_cpu\":%.3f,\"connections\":[",
           (unsigned long long)net.reading.oversize, (unsigned long long)net.closed, open_subs, stalled ? "true" : "false",
           (unsigned long long)answers_without_version, (unsigned long long)writer_hash, bench_own_cpu(&w),
           bench_server_cpu(&w), bench_other_cpu(&w));
    uint64_t top = watch ? opt_max_seq - 1 : sent;
    size_t bytes = top / 8 + 1;
    for (int i = 0; i < nsubs; i++) {
        conn_t *c = &subs[i];
        size_t used = bytes;
        if (watch) /* trim trailing zero bytes */
            while (used > 1 && !c->seen[used - 1]) used--;
        printf("%s{\"group\":%d,\"received\":%llu,\"duplicates\":%llu,\"reordered\":%llu,\"unparsed\":%llu,"
               "\"open\":%s,\"hash\":\"%016llx\",\"seen\":\"",
               i ? "," : "", c->group, (unsigned long long)c->received, (unsigned long long)c->duplicates,
               (unsigned long long)c->reordered, (unsigned long long)c->unparsed, c->ws.state == WS_READY ? "true" : "false",
               (unsigned long long)c->hash);
        bench_print_hex(c->seen, used);
        printf("\"}");
    }
    printf("]}\n");
    return 0;
}
