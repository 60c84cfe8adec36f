/*
 * siogen: a lean Socket.IO (Engine.IO v4 over websocket) load generator for
 * Satchel's room fan-out and idle benches (benches/README.md, "Socket.IO").
 *
 * One process, one thread, one epoll loop, loopback only; a sibling of
 * loadgen.c (same websocket framing, same histogram, same closed loop).
 * Every connection opens `/socket.io/?EIO=4&transport=websocket`, waits for
 * the Engine.IO open packet (`0{...}`), sends the Socket.IO CONNECT
 * `40<nsp>,<auth>` and waits for `40<nsp>,{"sid":...}`. A subscriber then
 * sends `42<nsp>,["join",{"channels":["<room>"]}]` and, as a barrier, a chat
 * whose content is over Asnity's 300-character limit with ack id 0: the
 * server handles one connection's events in order and acks such a chat
 * `{written:false}` without storing or sending anything, so its ack
 * (`43<nsp>,0[...]`) says the join is done. The publisher joins nothing.
 *
 * The publisher is closed-loop: at most --inflight chats are outstanding,
 *   42<nsp>,<seq>["chat",{"chatType":"new","channelId":"<room>","content":"<C>"}]
 * with ack id = sequence number and C exactly --size bytes:
 *   #<seq, 10 digits>t<send time, ns since start, 16 digits>xxxx...
 * A chat stops being outstanding when its ack `43<nsp>,<seq>[{"written":true`
 * has come back and every subscriber has its `new-chat`. Subscribers never
 * decode JSON: each read is walked frame by frame through the websocket
 * headers and each text frame is compared with one fixed prefix,
 *   42<nsp>,["new-chat",{"type":"TEXT","content":"#
 * after which the sequence number and the send time sit at fixed offsets.
 * (A new-chat frame that does not match that prefix is counted as
 * `unparsed_deliveries`: it must be 0.) Latency = subscriber read time -
 * the send time in the content, on one clock; one clock read per read().
 * Engine.IO pings ("2") are answered ("3") on every connection.
 *
 * Modes:
 *   siogen fanout [options]   measure deliveries/s, latency, losses
 *   siogen idle   [options]   open the connections (namespace + room), print
 *                             one JSON line ({"ready":N,...}), hold them
 *                             until stdin closes or --hold seconds pass
 *
 * --crash-after-ms MS (fanout, with --server-pid): after the measured run and
 * its drain, publish on for MS milliseconds and then SIGKILL the server with
 * chats in flight; read what it had already written, and write every chat
 * acknowledged over the whole run (sequence numbers, one a line) to
 * --acked-file. The runner restarts the server on the same data and checks
 * that each of them is stored.
 *
 * --publishers P (fanout): P publisher connections, chats sent round robin,
 * --inflight outstanding over all of them (a diagnostic: the server handles
 * the chats of different connections concurrently; `reordered` then counts
 * chats of different publishers arriving in another order, as expected).
 *
 * CPU: the result shows siogen's own CPU (user + system, share of one core),
 * the server's (from /proc/PID/stat, every thread) and that of every other
 * process on the machine (/proc/stat), over the measured window.
 *
 * Everything is bounded: connection count, run time, every wait.
 * The result is one JSON object on stdout. Build: cc -O2 -o siogen siogen.c
 */
#define _GNU_SOURCE
#define BENCH_NAME "siogen"
#include "wsclient.h" /* websocket framing and reader; benchcommon.h: clocks, CPU, histogram, epoll */

#include <signal.h>

#define MAX_EVENTS 1024
#define READ_SIZE (256 * 1024)
#define PREFIX 192      /* payload bytes looked at per frame */
#define SLOTS 65536     /* per sequence number: deliveries, ack, send time */
#define SEQ_DIGITS 10
#define TS_DIGITS 16

enum { S_WAIT_OPEN = WS_OWN_STATES, S_WAIT_CONNECT, S_JOINING };

typedef struct {
    ws_conn_t ws;
    int is_pub;
    uint8_t *out;       /* a publisher's unsent bytes */
    size_t out_len;
    uint64_t received;  /* new-chat frames received */
    int64_t last_seq;
    uint64_t reordered;
} conn_t;

/* options */
static const char *opt_host = "127.0.0.1";
static int opt_port = 0;
static const char *opt_path = "/socket.io/?EIO=4&transport=websocket";
static const char *opt_nsp = "/";
static const char *opt_auth = NULL;     /* CONNECT payload, e.g. {"token":"Bearer ..."} */
static const char *opt_room = "room";
static int opt_subs = 1000;
static int opt_size = 100;              /* bytes of each chat's content */
static int opt_inflight = 8;
static double opt_warmup = 1.0;
static double opt_duration = 5.0;
static double opt_setup_timeout = 180.0;
static double opt_stall = 5.0;
static double opt_hold = 60.0;
static int opt_server_pid = 0;
static int opt_concurrent_handshakes = 128;
static const char *opt_acked_file = NULL;
static int opt_crash_after_ms = 0;

static conn_t *conns;
static int nconns;
static conn_t *pubs;                   /* the publishers: conns[opt_subs ..] */
static int opt_publishers = 1;
static int next_pub = 0;
static ws_net_t net;
static uint64_t t_start;

/* per sequence slot */
static uint32_t slot_count[SLOTS];
static uint8_t slot_acked[SLOTS];
static uint64_t slot_sent_ns[SLOTS];
static uint64_t seq_next = 1;         /* next sequence number to send */
static uint64_t inflight = 0;
static uint64_t expected_per_msg = 0;

/* counters */
static int measuring = 0, counting = 1;
static uint64_t window_deliveries = 0, window_messages = 0;
static uint64_t total_deliveries = 0, misrouted = 0, other_frames = 0, pings_answered = 0;
static uint64_t unparsed_deliveries = 0, acks = 0, refused = 0, bad_acks = 0;
static bench_hist_t hist, ack_hist;
static uint64_t last_progress_ns = 0;
static uint64_t *acked_seqs;
static size_t acked_len = 0, acked_cap = 0;

static char new_chat_prefix[512];
static size_t new_chat_prefix_len;
static char ack_prefix[512];
static size_t ack_prefix_len;
static char connect_prefix[512];
static size_t connect_prefix_len;
#define PUB_OUT (1 << 20)

static void send_text(conn_t *c, const char *text, size_t len) {
    if (len + 14 > 8192) { fprintf(stderr, "siogen: control frame too long\n"); exit(2); }
    if (ws_send_text_n(c->ws.fd, text, len) < 0 && c->ws.state != WS_CLOSED) net.closed++;
}

/* "<type><nsp>," - the namespace part of a Socket.IO packet ("/" has none) */
static int packet_head(char *out, size_t cap, const char *type) {
    if (strcmp(opt_nsp, "/") == 0) return snprintf(out, cap, "%s", type);
    return snprintf(out, cap, "%s%s,", type, opt_nsp);
}

static void send_connect(conn_t *c) {
    char packet[4096];
    int n = packet_head(packet, sizeof packet, "40");
    if (opt_auth) n += snprintf(packet + n, sizeof packet - n, "%s", opt_auth);
    send_text(c, packet, n);
    c->ws.state = S_WAIT_CONNECT;
}

static void send_join(conn_t *c) {
    char packet[4096];
    int n = packet_head(packet, sizeof packet, "42");
    n += snprintf(packet + n, sizeof packet - n, "[\"join\",{\"channels\":[\"%s\"]}]", opt_room);
    send_text(c, packet, n);
    /* the barrier: a chat over 300 characters, acked {written:false}, nothing stored */
    n = packet_head(packet, sizeof packet, "42");
    n += snprintf(packet + n, sizeof packet - n, "0[\"chat\",{\"chatType\":\"new\",\"channelId\":\"%s\",\"content\":\"",
                  opt_room);
    memset(packet + n, 'b', 301);
    n += 301;
    n += snprintf(packet + n, sizeof packet - n, "\"}]");
    send_text(c, packet, n);
    c->ws.state = S_JOINING;
}

static void complete_if_done(uint32_t slot, uint64_t now) {
    if (slot_acked[slot] && slot_count[slot] == expected_per_msg) {
        slot_acked[slot] = 2; /* done */
        inflight--;
        if (measuring) window_messages++;
        last_progress_ns = now;
    }
}

static uint64_t parse_digits(const uint8_t *d, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v * 10 + (uint64_t)(d[i] - '0');
    return v;
}

static void on_delivery(conn_t *c, const uint8_t *marker, uint64_t now) {
    /* marker: "<seq 10>t<ts 16>" */
    if (c->is_pub) { misrouted++; return; }
    uint64_t seq = parse_digits(marker, SEQ_DIGITS);
    uint64_t sent = parse_digits(marker + SEQ_DIGITS + 1, TS_DIGITS) + t_start;
    if ((int64_t)seq <= c->last_seq) c->reordered++;
    c->last_seq = seq;
    c->received++;
    if (!counting) return;
    total_deliveries++;
    if (measuring) {
        window_deliveries++;
        bench_hist_record(&hist, now - sent);
    }
    uint32_t slot = seq & (SLOTS - 1);
    slot_count[slot]++;
    complete_if_done(slot, now);
}

static void on_ack(conn_t *c, const uint8_t *p, size_t len, uint64_t now) {
    /* p points after "43<nsp>,": "<id>[{"written":true..." */
    size_t i = 0;
    uint64_t id = 0;
    while (i < len && p[i] >= '0' && p[i] <= '9') id = id * 10 + (p[i++] - '0');
    if (i == 0) { bad_acks++; return; }
    if (!c->is_pub) {
        if (id == 0 && c->ws.state == S_JOINING) ws_net_ready(&net, &c->ws);
        else bad_acks++;
        return;
    }
    static const char written[] = "[{\"written\":true";
    if (len - i < sizeof written - 1 || memcmp(p + i, written, sizeof written - 1) != 0) {
        refused++;
        return;
    }
    if (id == 0 || id >= seq_next) { bad_acks++; return; }
    acks++;
    if (acked_len == acked_cap) {
        acked_cap = acked_cap ? acked_cap * 2 : 4096;
        acked_seqs = realloc(acked_seqs, acked_cap * sizeof *acked_seqs);
        if (!acked_seqs) bench_die("realloc");
    }
    acked_seqs[acked_len++] = id;
    uint32_t slot = id & (SLOTS - 1);
    if (measuring) bench_hist_record(&ack_hist, now - slot_sent_ns[slot]);
    if (!counting) return;
    if (slot_acked[slot] == 0) {
        slot_acked[slot] = 1;
        complete_if_done(slot, now);
    }
}

static void on_text(conn_t *c, const uint8_t *p, size_t len, uint64_t plen, uint64_t now) {
    if (len >= new_chat_prefix_len + SEQ_DIGITS + 1 + TS_DIGITS
        && memcmp(p, new_chat_prefix, new_chat_prefix_len) == 0) {
        on_delivery(c, p + new_chat_prefix_len, now);
        return;
    }
    if (plen == 1 && len == 1 && p[0] == '2') { /* Engine.IO ping */
        send_text(c, "3", 1);
        pings_answered++;
        return;
    }
    if (len > ack_prefix_len && memcmp(p, ack_prefix, ack_prefix_len) == 0) {
        on_ack(c, p + ack_prefix_len, len - ack_prefix_len, now);
        return;
    }
    if (c->ws.state == S_WAIT_OPEN && len >= 2 && p[0] == '0' && p[1] == '{') {
        send_connect(c);
        return;
    }
    if (c->ws.state == S_WAIT_CONNECT && len >= connect_prefix_len && memcmp(p, connect_prefix, connect_prefix_len) == 0) {
        if (c->is_pub) ws_net_ready(&net, &c->ws);
        else send_join(c);
        return;
    }
    if (len >= 2 && p[0] == '4' && p[1] == '4') {
        char why[256];
        snprintf(why, sizeof why, "connect_error: %.*s", (int)(len < 200 ? len : 200), p);
        ws_net_fail(&net, &c->ws, why);
        return;
    }
    if (memmem(p, len, "\"new-chat\"", 10)) unparsed_deliveries++;
    else other_frames++;
}

static int on_frame(void *ctx, int opcode, const uint8_t *prefix, size_t prefix_len, uint64_t plen) {
    conn_t *c = ctx;
    if (opcode == 1) {
        on_text(c, prefix, prefix_len, plen, net.reading.now);
    } else if (opcode == 8) {
        ws_net_fail(&net, &c->ws, "server closed the websocket");
    } else if (opcode == 9 && plen <= prefix_len) {
        ws_pong(c->ws.fd, prefix, prefix_len, plen);
    } else {
        other_frames++;
    }
    return c->ws.state == WS_CLOSED;
}

static void flush_pub(conn_t *pub) {
    while (pub->out_len) {
        ssize_t n = write(pub->ws.fd, pub->out, pub->out_len);
        if (n < 0) {
            if (errno == EAGAIN) { bench_ep_mod(net.epfd, pub->ws.fd, &pub->ws, EPOLLIN | EPOLLOUT); return; }
            if (!counting) { pub->out_len = 0; return; } /* the server is gone (the crash phase) */
            bench_die("publisher write");
        }
        memmove(pub->out, pub->out + n, pub->out_len - n);
        pub->out_len -= n;
    }
    bench_ep_mod(net.epfd, pub->ws.fd, &pub->ws, EPOLLIN);
}

static int publishers_ready(void) {
    for (int i = 0; i < opt_publishers; i++)
        if (pubs[i].ws.state != WS_READY) return 0;
    return 1;
}

static int sending = 0;

static void publish_more(void) {
    if (!sending || !publishers_ready()) return;
    int wrote = 0;
    uint64_t now = bench_now_ns();
    char packet[4096];
    for (;;) {
        /* round robin over the publishers */
        conn_t *pub = &pubs[next_pub];
        if (inflight >= (uint64_t)opt_inflight || pub->out_len + sizeof packet + 16 >= PUB_OUT) break;
        next_pub = (next_pub + 1) % opt_publishers;
        uint64_t seq = seq_next++;
        uint32_t slot = seq & (SLOTS - 1);
        if (slot_acked[slot] == 1 || (slot_count[slot] != 0 && slot_acked[slot] != 2)) {
            fprintf(stderr, "siogen: sequence window wrapped onto an incomplete message\n");
            exit(2);
        }
        slot_count[slot] = 0;
        slot_acked[slot] = 0;
        slot_sent_ns[slot] = now;
        int n = packet_head(packet, sizeof packet, "42");
        n += snprintf(packet + n, sizeof packet - n,
                      "%llu[\"chat\",{\"chatType\":\"new\",\"channelId\":\"%s\",\"content\":\"#%0*llut%0*llu",
                      (unsigned long long)seq, opt_room, SEQ_DIGITS, (unsigned long long)(seq % 10000000000ull),
                      TS_DIGITS, (unsigned long long)(now - t_start));
        int pad = opt_size - (1 + SEQ_DIGITS + 1 + TS_DIGITS);
        memset(packet + n, 'x', pad);
        n += pad;
        n += snprintf(packet + n, sizeof packet - n, "\"}]");
        pub->out_len += ws_client_frame(pub->out + pub->out_len, 1, (uint8_t *)packet, n);
        inflight++;
        wrote = 1;
    }
    if (wrote)
        for (int i = 0; i < opt_publishers; i++) flush_pub(&pubs[i]);
}

static void on_open(ws_conn_t *c) { c->state = S_WAIT_OPEN; }

static void on_writable(ws_conn_t *c) {
    conn_t *conn = (conn_t *)c;
    if (conn->is_pub) flush_pub(conn);
}

static void loop_once(int timeout_ms) { ws_net_loop_once(&net, timeout_ms); }

static void usage(void) {
    fprintf(stderr,
            "usage: siogen fanout|idle --port P --nsp /socket/commu-ID --room CHANNEL [--auth JSON]\n"
            "  [--path /socket.io/?EIO=4&transport=websocket] [--subs N] [--size BYTES] [--inflight K]\n"
            "  [--warmup S] [--duration S] [--server-pid PID] [--hold S] [--acked-file PATH]\n"
            "  [--crash-after-ms MS] [--publishers P] [--setup-timeout S] [--stall S]\n");
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 2) usage();
    const char *mode = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (strcmp(a, name) == 0 && v && (i++, 1))
        if (OPT("--host")) opt_host = v;
        else if (OPT("--port")) opt_port = atoi(v);
        else if (OPT("--path")) opt_path = v;
        else if (OPT("--nsp")) opt_nsp = v;
        else if (OPT("--auth")) opt_auth = v;
        else if (OPT("--room")) opt_room = v;
        else if (OPT("--subs")) opt_subs = atoi(v);
        else if (OPT("--size")) opt_size = atoi(v);
        else if (OPT("--inflight")) opt_inflight = atoi(v);
        else if (OPT("--warmup")) opt_warmup = atof(v);
        else if (OPT("--duration")) opt_duration = atof(v);
        else if (OPT("--setup-timeout")) opt_setup_timeout = atof(v);
        else if (OPT("--stall")) opt_stall = atof(v);
        else if (OPT("--hold")) opt_hold = atof(v);
        else if (OPT("--server-pid")) opt_server_pid = atoi(v);
        else if (OPT("--acked-file")) opt_acked_file = v;
        else if (OPT("--crash-after-ms")) opt_crash_after_ms = atoi(v);
        else if (OPT("--publishers")) opt_publishers = atoi(v);
        else if (OPT("--concurrent-handshakes")) opt_concurrent_handshakes = atoi(v);
        else usage();
    }
    if (opt_publishers < 1 || opt_publishers > 64) usage();
    if (!opt_port || opt_subs < 1 || opt_subs > 60000 || opt_inflight < 1 || opt_inflight > SLOTS / 4) usage();
    if (opt_size < 1 + SEQ_DIGITS + 1 + TS_DIGITS || opt_size > 300) {
        fprintf(stderr, "siogen: --size is %d..300 (Asnity's limit)\n", 1 + SEQ_DIGITS + 1 + TS_DIGITS);
        return 2;
    }
    if (strlen(opt_nsp) > 200 || strlen(opt_room) > 200 || (opt_auth && strlen(opt_auth) > 2000)) usage();
    bench_loopback_only(opt_host);
    if (opt_duration > 120 || opt_hold > 600 || opt_warmup > 60 || opt_setup_timeout > 600 || opt_crash_after_ms > 10000) {
        fprintf(stderr, "siogen: bounded runs only\n");
        return 2;
    }
    if (opt_crash_after_ms && (!opt_server_pid || !opt_acked_file)) {
        fprintf(stderr, "siogen: --crash-after-ms needs --server-pid and --acked-file\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    bench_raise_nofile();

    t_start = bench_now_ns();
    ws_net_init(&net, opt_port, PREFIX, 0, READ_SIZE);
    net.on_open = on_open;
    net.on_frame = on_frame;
    net.on_writable = on_writable;
    bench_hist_init(&hist);
    bench_hist_init(&ack_hist);
    int n = packet_head(new_chat_prefix, sizeof new_chat_prefix, "42");
    n += snprintf(new_chat_prefix + n, sizeof new_chat_prefix - n, "[\"new-chat\",{\"type\":\"TEXT\",\"content\":\"#");
    new_chat_prefix_len = n;
    ack_prefix_len = packet_head(ack_prefix, sizeof ack_prefix, "43");
    connect_prefix_len = packet_head(connect_prefix, sizeof connect_prefix, "40");
    if (new_chat_prefix_len + SEQ_DIGITS + 1 + TS_DIGITS > PREFIX) { fprintf(stderr, "siogen: namespace too long\n"); return 2; }

    int is_fanout = strcmp(mode, "fanout") == 0;
    if (!is_fanout && strcmp(mode, "idle") != 0) usage();
    nconns = opt_subs + (is_fanout ? opt_publishers : 0);
    conns = calloc(nconns, sizeof *conns);
    for (int i = 0; i < nconns; i++) {
        conns[i].ws.path = opt_path;
        conns[i].last_seq = -1;
    }
    if (is_fanout) {
        pubs = &conns[opt_subs];
        for (int i = 0; i < opt_publishers; i++) {
            pubs[i].is_pub = 1;
            pubs[i].out = malloc(PUB_OUT);
            if (!pubs[i].out) bench_die("malloc");
        }
    }
    uint64_t t_setup = bench_now_ns();
    ws_net_setup(&net, NULL, 0, conns, nconns, sizeof *conns, opt_concurrent_handshakes, opt_setup_timeout);
    double setup_s = (bench_now_ns() - t_setup) / 1e9;

    if (!is_fanout) {
        printf("{\"mode\":\"idle\",\"ready\":%d,\"failed\":%d,\"setup_s\":%.3f}\n", net.ready, net.failed, setup_s);
        fflush(stdout);
        bench_hold(opt_hold, loop_once);
        fprintf(stderr, "siogen idle: %llu pings answered, %llu closed by the server\n",
                (unsigned long long)pings_answered, (unsigned long long)net.closed);
        return 0;
    }

    if (net.ready < nconns || !publishers_ready()) {
        printf("{\"mode\":\"fanout\",\"error\":\"setup failed\",\"ready\":%d,\"failed\":%d,\"wanted\":%d}\n", net.ready,
               net.failed, nconns);
        return 1;
    }
    expected_per_msg = (uint64_t)opt_subs;

    /* warmup, then the measured window, then drain */
    sending = 1;
    bench_run_t run = {.warmup_s = opt_warmup, .duration_s = opt_duration, .stall_s = opt_stall,
                       .server_pid = opt_server_pid, .poll_ms = 50, .loop_once = loop_once, .more = publish_more,
                       .last_progress_ns = &last_progress_ns, .measuring = &measuring};
    bench_window_t w;
    int stalled = bench_run(&run, &w);
    sending = 0;
    bench_drain(loop_once, &inflight, 3.0, 0.2);

    uint64_t sent = seq_next - 1;
    uint64_t lost = sent * expected_per_msg - total_deliveries;
    uint64_t acks_main = acks;
    uint64_t reordered = 0;
    int open_subs = 0;
    for (int i = 0; i < opt_subs; i++) {
        reordered += conns[i].reordered;
        open_subs += conns[i].ws.state == WS_READY;
    }
    uint64_t closes_main = net.closed;

    /* the crash phase: chats in flight when the server is killed */
    uint64_t crash_sent = 0, crash_acked = 0;
    int crashed = 0;
    if (opt_crash_after_ms && !stalled && publishers_ready()) {
        uint64_t seq_before = seq_next, acks_before = acks;
        counting = 0; /* deliveries and completion no longer counted; acks are recorded */
        inflight = 0;
        sending = 1;
        uint64_t kill_at = bench_now_ns() + (uint64_t)opt_crash_after_ms * 1000000ull;
        while (bench_now_ns() < kill_at) {
            /* --inflight chats awaiting their acks, so that some are in flight at the kill */
            inflight = (seq_next - seq_before) - (acks - acks_before);
            publish_more();
            loop_once(1);
        }
        if (kill(opt_server_pid, SIGKILL) == 0) crashed = 1;
        sending = 0;
        uint64_t read_end = bench_now_ns() + 500000000ull;
        while (bench_now_ns() < read_end && pubs[0].ws.state != WS_CLOSED) loop_once(20);
        crash_sent = seq_next - seq_before;
        crash_acked = acks - acks_before;
    }
    if (opt_acked_file) {
        FILE *f = fopen(opt_acked_file, "w");
        if (!f) bench_die("acked file");
        for (size_t i = 0; i < acked_len; i++) fprintf(f, "%llu\n", (unsigned long long)acked_seqs[i]);
        fclose(f);
    }

    double wall = bench_window_s(&w);
    printf("{\"mode\":\"fanout\",\"subscribers\":%d,\"receivers_per_message\":%llu,\"inflight\":%d,\"content_bytes\":%d,"
           "\"setup_s\":%.3f,\"window_s\":%.3f,\"messages_per_s\":%.1f,\"deliveries_per_s\":%.1f,",
           opt_subs, (unsigned long long)expected_per_msg, opt_inflight, opt_size, setup_s, wall,
           wall ? window_messages / wall : 0, wall ? window_deliveries / wall : 0);
    bench_print_latency("latency_us", &hist);
    putchar(',');
    bench_print_latency("ack_latency_us", &ack_hist);
    printf(",\"sent\":%llu,\"acked\":%llu,\"refused\":%llu,\"bad_acks\":%llu,\"delivered\":%llu,\"lost\":%llu,"
           "\"misrouted\":%llu,\"reordered\":%llu,\"unparsed_deliveries\":%llu,\"other_frames\":%llu,"
           "\"pings_answered\":%llu,\"closed_by_server\":%llu,\"open_subscribers\":%d,\"stalled\":%s,"
           "\"crash\":{\"killed\":%s,\"sent\":%llu,\"acked\":%llu,\"after_ms\":%d},\"acked_total\":%zu,"
           "\"loadgen_cpu\":%.3f,\"server_cpu\":%.3f,\"other_cpu\":%.3f}\n",
           (unsigned long long)sent, (unsigned long long)acks_main, (unsigned long long)refused,
           (unsigned long long)bad_acks, (unsigned long long)total_deliveries, (unsigned long long)lost,
           (unsigned long long)misrouted, (unsigned long long)reordered, (unsigned long long)unparsed_deliveries,
           (unsigned long long)other_frames, (unsigned long long)pings_answered, (unsigned long long)closes_main,
           open_subs, stalled ? "true" : "false", crashed ? "true" : "false", (unsigned long long)crash_sent,
           (unsigned long long)crash_acked, opt_crash_after_ms, acked_len, bench_own_cpu(&w), bench_server_cpu(&w),
           wall && opt_server_pid ? bench_other_cpu(&w) : -1);
    return 0;
}
