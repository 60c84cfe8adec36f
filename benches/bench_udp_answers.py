"""What sending a batch's answers costs the UDP endpoint (issue 13): 512
answers of 30 bytes to 512 loopback sockets, one ``sendto`` each (the
per-datagram path) against one ``sendmmsg`` call from preallocated arrays
(``transports/udp_batch.py``). The receivers are drained between rounds,
outside the timing. Loopback delivery runs inside the sender's syscall, so
both columns include the kernel's receive side too.

Run: python benches/bench_udp_answers.py [--rounds 200] [--batch 512]
"""

from __future__ import annotations

import argparse
import os
import socket
import time

import trio

from satchel.transports.udp_batch import MmsgSender, PerDatagramSender


def _drain(receivers: list[socket.socket]) -> int:
    got = 0
    for receiver in receivers:
        while True:
            try:
                receiver.recv(64)
                got += 1
            except BlockingIOError:
                break
    return got


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--batch", type=int, default=512)
    options = parser.parse_args()
    receivers = []
    for _ in range(options.batch):
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        receiver.bind(("127.0.0.1", 0))
        receiver.setblocking(False)
        receivers.append(receiver)
    peers = [receiver.getsockname() for receiver in receivers]
    answers = [os.urandom(30) for _ in peers]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        senders = {"sendto each": PerDatagramSender(sock), "sendmmsg": MmsgSender(sock, options.batch)}
        print(f"{options.batch} answers of 30 bytes to {options.batch} loopback sockets, {options.rounds} rounds each, "
              "interleaved; us per answer (wall, cpu of this process)")
        totals = {name: [0.0, 0.0, 0] for name in senders}
        for _ in range(options.rounds):
            for name, sender in senders.items():
                wall, cpu = time.perf_counter(), time.process_time()
                sent = await sender.send(answers, peers)
                totals[name][0] += time.perf_counter() - wall
                totals[name][1] += time.process_time() - cpu
                got = _drain(receivers)
                assert sent == got == options.batch, (name, sent, got)
                totals[name][2] += sent
        for name, (wall, cpu, count) in totals.items():
            print(f"{name:<14}{wall / count * 1e6:>8.2f}{cpu / count * 1e6:>8.2f}")
    for receiver in receivers:
        receiver.close()


if __name__ == "__main__":
    trio.run(main)
