#!/usr/bin/env python3
"""How a running switchboard copes with many idle or slowloris connections.

Holds --idle connections open, then measures
  1. the connect rate: new clients (connect + 4-byte ID) per second, up to
     --connect of them or --seconds, whichever comes first;
  2. round-trip latency of one pair (v1 frames, one in flight) while every
     idle client, now slowloris, sends one byte of a never-finished frame
     every --interval seconds: up to --round-trips or --seconds.
Bounded in count and time; prints one line per figure.

  python3 scripts/idle_load.py --port PORT [--idle 1000] [--connect 3000] [--batch 100]
"""
import argparse
import socket
import statistics
import struct
import threading
import time


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("server closed the connection")
        buf += chunk
    return buf


def client_id(s):
    return struct.unpack(">I", recv_exact(s, 4))[0]


def open_many(port, n, deadline, batch=100):
    """Up to n greeted clients, `batch` handshakes at a time, until deadline."""
    out = []
    while len(out) < n and time.monotonic() < deadline:
        socks = [connect(port) for _ in range(min(batch, n - len(out)))]
        for s in socks:
            client_id(s)
        out.extend(socks)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--idle", type=int, default=1000)
    p.add_argument("--connect", type=int, default=3000)
    p.add_argument("--round-trips", type=int, default=2000)
    p.add_argument("--seconds", type=float, default=40.0)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=100, help="handshakes in flight while connecting")
    a = p.parse_args()

    idle = open_many(a.port, a.idle, time.monotonic() + 120)
    print(f"idle connections: {len(idle)}")

    start = time.monotonic()
    fresh = open_many(a.port, a.connect, start + a.seconds, a.batch)
    took = time.monotonic() - start
    print(f"connect rate ({a.batch} at a time) beside {len(idle)} idle: {len(fresh)} in {took:.2f} s = {len(fresh) / took:.0f}/s")
    for s in fresh:
        s.close()

    # Slowloris: every idle client starts a frame to itself, then adds a byte now and then.
    for s in idle:
        s.sendall(struct.pack(">I", 0xFFFFFF01) + b"slow")  # a reserved ID: never delivered
    stop = threading.Event()

    def trickle():
        pause = a.interval / max(1, len(idle))
        while not stop.is_set():
            for s in idle:
                if stop.is_set():
                    return
                s.send(b"x")
                time.sleep(pause)

    t = threading.Thread(target=trickle, daemon=True)
    if idle:
        t.start()

    x, y = connect(a.port), connect(a.port)
    xid, yid = client_id(x), client_id(y)
    rtts = []
    end = time.monotonic() + a.seconds
    while len(rtts) < a.round_trips and time.monotonic() < end:
        t0 = time.perf_counter()
        x.sendall(struct.pack(">I", yid) + b"ping\0")
        recv_exact(y, 5)
        y.sendall(struct.pack(">I", xid) + b"pong\0")
        recv_exact(x, 5)
        rtts.append(time.perf_counter() - t0)
    stop.set()
    if idle:
        t.join()
    rtts.sort()
    print(f"round trips beside {len(idle)} slowloris: {len(rtts)}, p50 {statistics.median(rtts) * 1e3:.3f} ms, "
          f"p99 {rtts[int(len(rtts) * 0.99) - 1] * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
