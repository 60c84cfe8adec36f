"""How two accepting processes share fresh connections: one inherited
listener (``shared``) or a listener each with SO_REUSEPORT (``reuseport``,
beside a held socket that never listens, as ``satchel serve --workers``
does) - the choice ``transports/workers.py`` makes (issue 15 part 4).

Each child waits in epoll, accepts, spins 200 us (a little work), answers
its pid and closes. The parent connects 2,000 times, one at a time and 50 at
once, and counts the answers per pid and the connections per second.

Run: python benches/bench_accept_spread.py shared|reuseport
"""
import os, socket, sys, time, select, collections
from concurrent.futures import ThreadPoolExecutor

def child(listener, busy):
    listener.setblocking(False)
    ep = select.epoll(); ep.register(listener.fileno(), select.EPOLLIN)
    while True:
        ep.poll()
        try:
            c, _ = listener.accept()
        except BlockingIOError:
            continue
        t = time.perf_counter()
        while time.perf_counter() - t < busy: pass
        c.sendall(str(os.getpid()).encode()); c.close()

def run(mode, n=2000, conc=50, busy=0.0002):
    pids = []
    if mode == "shared":
        l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); l.bind(("127.0.0.1", 0)); l.listen(1024)
        port = l.getsockname()[1]
        for _ in range(2):
            p = os.fork()
            if p == 0: child(l, busy)
            pids.append(p)
        l.close()
    else:
        h = socket.socket(); h.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1); h.bind(("127.0.0.1", 0)); port = h.getsockname()[1]
        for _ in range(2):
            p = os.fork()
            if p == 0:
                l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1); l.bind(("127.0.0.1", port)); l.listen(1024)
                child(l, busy)
            pids.append(p)
        time.sleep(0.3)
    time.sleep(0.3)
    def one(_):
        s = socket.create_connection(("127.0.0.1", port)); d = s.recv(32); s.close(); return int(d)
    for c in (1, conc):
        t = time.perf_counter()
        with ThreadPoolExecutor(c) as ex:
            got = collections.Counter(ex.map(one, range(n)))
        print(mode, "concurrency", c, dict(got), f"{n/(time.perf_counter()-t):.0f}/s")
    for p in pids: os.kill(p, 9); os.waitpid(p, 0)

if __name__ == "__main__":
    run(sys.argv[1])
