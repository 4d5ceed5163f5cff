#!/usr/bin/env python3
"""An independent client for the switchboard protocol, in Python's standard
library only: the article's it_works exchange, byte for byte, then a few
more frames pipelined in one write. Exits non-zero on any mismatch.

Usage: article_client.py [PORT [PORT2]]. With PORT2, client 2 connects
there: two nodes of one cluster (serve --cluster), the article's exchange
crossing between them."""
import socket
import struct
import sys

HOST, PORT = "127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 8080
PORT2 = int(sys.argv[2]) if len(sys.argv) > 2 else PORT
TIMEOUT = 10.0


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise SystemExit(f"server closed the connection after {len(data)} of {n} bytes")
        data += chunk
    return data


def connect(port=PORT):
    sock = socket.create_connection((HOST, port), timeout=TIMEOUT)
    (client_id,) = struct.unpack(">I", read_exact(sock, 4))
    return sock, client_id


def main():
    msg1, msg2 = b"hello, number 2\0", b"hello back, number 1\0"
    sock1, id1 = connect()
    sock2, id2 = connect(PORT2)

    sock1.sendall(struct.pack(">I", id2) + msg1)
    got = read_exact(sock2, len(msg1))
    assert got == msg1, f"client 2 got {got!r}"

    sock2.sendall(struct.pack(">I", id1) + msg2)
    got = read_exact(sock1, len(msg2))
    assert got == msg2, f"client 1 got {got!r}"

    frames = [f"frame {i}".encode() + b"\0" for i in range(100)]
    sock1.sendall(b"".join(struct.pack(">I", id2) + f for f in frames))
    got = read_exact(sock2, sum(len(f) for f in frames))
    assert got == b"".join(frames), "pipelined frames arrived changed or out of order"

    print(f"article exchange OK (ids {id1} and {id2}), 100 pipelined frames OK")


if __name__ == "__main__":
    main()
