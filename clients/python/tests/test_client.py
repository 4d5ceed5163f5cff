"""The Python client against a real `switchboard serve` (SWITCHBOARD_BIN, or
build/dev's binary) on a free port, and against fake v1-only servers.

Run from clients/python with the package on the path, as ctest does:
    SWITCHBOARD_BIN=build/dev/src/cli/switchboard PYTHONPATH=clients/python \
        python3 -m unittest discover -s clients/python/tests
"""

import os
import re
import socket
import struct
import subprocess
import tempfile
import threading
import time
import unittest
from pathlib import Path

import switchboard
from switchboard import AuthError, ConnectionClosed, Error, ErrorCode, Message, NotV2Error

ROOT = Path(__file__).resolve().parents[3]
BIN = os.environ.get("SWITCHBOARD_BIN", str(ROOT / "build/dev/src/cli/switchboard"))
WAIT = 10.0  # generous: only matters when something is broken


class Server:
    """A `switchboard serve` on 127.0.0.1, port 0; stopped by PID."""

    def __init__(self, *extra):
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([BIN, "serve", "--listen", "127.0.0.1:0", *extra],
                                     stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        line = self.proc.stdout.readline()  # the server prints it once bound, or exits
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if not m:
            self.stop()
            log = self.log()
            self.stderr.close()
            raise RuntimeError(f"server did not start: {line!r} {log}")
        self.port = int(m.group(1))

    def log(self):
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        return self.proc.returncode


class ServerTest(unittest.TestCase):
    server_args = ()

    def setUp(self):
        self.server = Server(*self.server_args)
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()
        code = self.server.stop()
        log = self.server.log()
        self.server.stderr.close()
        self.assertEqual(code, 0, log)

    def connect(self, token=None):
        c = switchboard.Client.connect("127.0.0.1", self.server.port, token=token, timeout=WAIT)
        self.clients.append(c)
        return c

    def expect_message(self, c):
        ev = c.recv(timeout=WAIT)
        self.assertIsInstance(ev, Message, ev)
        return ev


class ClientTest(ServerTest):
    server_args = ("--max-frame", "64K")

    def test_connect_gives_ids_and_max_frame(self):
        a, b = self.connect(), self.connect()
        self.assertNotEqual(a.id, b.id)
        self.assertEqual(a.max_frame, 64 * 1024)
        self.assertIsNone(a.recv(timeout=0))

    def test_message_carries_its_source_and_can_be_answered(self):
        a, b = self.connect(), self.connect()
        a.send(b.id, b"hello b")
        m = self.expect_message(b)
        self.assertEqual(m, Message(a.id, b"hello b"))
        b.send(m.source, b"hello a")
        self.assertEqual(self.expect_message(a), Message(b.id, b"hello a"))

    def test_binary_payloads(self):
        a, b = self.connect(), self.connect()
        every = bytes(range(256))
        a.send(b.id, every)
        a.send(b.id, b"\0\0")
        a.send(b.id, b"")
        big = bytes(i % 251 for i in range(a.max_frame))
        a.send(b.id, big)
        self.assertEqual(self.expect_message(b).payload, every)
        self.assertEqual(self.expect_message(b).payload, b"\0\0")
        self.assertEqual(self.expect_message(b).payload, b"")
        self.assertEqual(self.expect_message(b).payload, big)
        with self.assertRaisesRegex(switchboard.SwitchboardError, "max_frame"):
            a.send(b.id, big + b"x")

    def test_no_route_error_with_subject(self):
        a = self.connect()
        a.send(4000000, b"nobody")
        ev = a.recv(timeout=WAIT)
        self.assertIsInstance(ev, Error)
        self.assertIs(ev.code, ErrorCode.no_route)
        self.assertEqual(ev.subject, 4000000)
        self.assertEqual(switchboard.describe(ev), "no client 4000000 (no_route)")

    def test_ping_is_a_barrier(self):
        a, b = self.connect(), self.connect()
        a.send(b.id, b"first")
        # Enough frames that, without the barrier, their ERRORs could not all be back yet.
        nobody, count = 3000000, 1000
        for i in range(count):
            a.send(nobody + i, b"x" * 200)
        a.ping(timeout=WAIT)
        for i in range(count):  # all already here, in order, once the PONG is
            ev = a.recv(timeout=0)
            self.assertEqual((ev.code, ev.subject), (ErrorCode.no_route, nobody + i))
        self.assertIsNone(a.recv(timeout=0))
        b.send(a.id, b"meanwhile")
        b.ping()
        a.ping()  # crosses the message; keeps it for recv
        self.assertEqual(self.expect_message(a), Message(b.id, b"meanwhile"))
        self.assertEqual(self.expect_message(b), Message(a.id, b"first"))

    def test_context_manager_and_server_stop(self):
        with switchboard.Client.connect("localhost", self.server.port, timeout=WAIT) as a:
            self.server.stop()
            with self.assertRaises(ConnectionClosed):
                for _ in range(100):  # bounded: the first call already raises
                    a.recv(timeout=WAIT)


class AuthTest(ServerTest):
    def setUp(self):
        self.tokens = tempfile.NamedTemporaryFile("w", suffix=".tokens", delete=False)
        self.tokens.write("# tokens\nsecret-1\n")
        self.tokens.close()
        self.server_args = ("--auth-token-file", self.tokens.name)
        super().setUp()

    def tearDown(self):
        super().tearDown()
        os.unlink(self.tokens.name)

    def test_listed_token_accepted(self):
        a, b = self.connect("secret-1"), self.connect("secret-1")
        a.send(b.id, b"ok")
        self.assertEqual(self.expect_message(b), Message(a.id, b"ok"))

    def test_wrong_or_missing_token_rejected(self):
        with self.assertRaisesRegex(AuthError, "unauthorized"):
            self.connect("secret-2")
        with self.assertRaisesRegex(AuthError, "requires a token"):
            self.connect()


class FakeServer:
    """One connection on a loopback port, handled by script(conn) on a thread."""

    def __init__(self, script, family=socket.AF_INET):
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        self.listener.listen(4)
        self.listener.settimeout(WAIT)
        self.port = self.listener.getsockname()[1]
        self.hello = b""
        self.thread = threading.Thread(target=self._run, args=(script,), daemon=True)
        self.thread.start()

    def _run(self, script):
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(WAIT)
            script(self, conn)

    def read_frame(self, conn):
        data = b""
        while not data.endswith(b"\0"):
            try:
                chunk = conn.recv(1)
            except OSError:
                return b""
            if not chunk:
                return b""
            data += chunk
        self.hello = data[:-1]
        return self.hello

    def nonce(self):
        m = re.search(rb"nonce=([0-9a-f]+)", self.hello)
        return m.group(1) if m else b""

    @staticmethod
    def wait_for_close(conn):
        try:
            while conn.recv(256):
                pass
        except OSError:
            pass

    def close(self):
        self.thread.join(WAIT + 5)
        self.listener.close()


class V1ServerTest(unittest.TestCase):
    def fake(self, script, family=socket.AF_INET):
        f = FakeServer(script, family)
        self.addCleanup(f.close)
        return f

    def test_unsupported_answer(self):
        def script(f, conn):
            conn.sendall(struct.pack(">I", 5))
            f.read_frame(conn)
            conn.sendall(b"switchboard/2 error nonce=" + f.nonce() + b" unsupported\0")

        f = self.fake(script)
        with self.assertRaisesRegex(NotV2Error, "server does not speak protocol v2.*unsupported"):
            switchboard.Client.connect("127.0.0.1", f.port, timeout=WAIT)
        self.assertEqual(f.hello[:4], b"\xff\xff\xff\xff")
        self.assertRegex(f.nonce().decode(), r"^[0-9a-f]{16,64}$")

    def test_silence_times_out(self):
        def script(f, conn):
            conn.sendall(struct.pack(">I", 5))
            f.read_frame(conn)
            f.wait_for_close(conn)

        f = self.fake(script)
        start = time.monotonic()
        with self.assertRaisesRegex(NotV2Error, "server does not speak protocol v2.*no welcome within 0.3 s"):
            switchboard.Client.connect("127.0.0.1", f.port, timeout=0.3)
        self.assertLess(time.monotonic() - start, 9)  # gave up rather than hung; not a speed check

    def test_close_after_hello(self):
        def script(f, conn):
            conn.sendall(struct.pack(">I", 5))
            f.read_frame(conn)

        f = self.fake(script)
        with self.assertRaisesRegex(NotV2Error, "closed the connection"):
            switchboard.Client.connect("127.0.0.1", f.port, timeout=WAIT)

    def test_send_to_a_server_that_stops_reading(self):
        done = threading.Event()

        def script(f, conn):
            conn.sendall(struct.pack(">I", 5))
            f.read_frame(conn)
            conn.sendall(b"switchboard/2 ok nonce=" + f.nonce() + b" id=5 max_frame=67108864\0")
            done.wait(WAIT)  # reads nothing more (the client's FIN would wait behind the unread bytes)

        f = self.fake(script)
        self.addCleanup(done.set)
        c = switchboard.Client.connect("127.0.0.1", f.port, timeout=WAIT)
        with self.assertRaisesRegex(switchboard.SwitchboardTimeout, "the connection is closed"):
            c.send(1, b"x" * (64 << 20), timeout=0.3)  # more than both kernels' buffers hold
        with self.assertRaisesRegex(switchboard.SwitchboardError, "closed"):
            c.send(1, b"after")

    def test_pre_upgrade_deliveries_and_nonce_rule(self):
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            def script(f, conn):
                conn.sendall(struct.pack(">I", 5) + b"early\0bin\x01\0")
                f.read_frame(conn)
                conn.sendall(b"switchboard/2 ok nonce=" + b"0" * 32 + b" id=9 max_frame=10\0")
                deliver = struct.pack(">IBI", 5 + 3, 0x81, 42) + b"a\0b"
                error = struct.pack(">IBBI", 6 + 4, 0x83, 3, 42) + b"why!"
                conn.sendall(b"switchboard/2 ok nonce=" + f.nonce() + b" id=7 max_frame=4096\0" + deliver + error)
                f.wait_for_close(conn)

            f = self.fake(script, family)
            with switchboard.Client.connect(host, f.port, timeout=WAIT) as c:
                self.assertEqual((c.id, c.max_frame), (7, 4096))
                self.assertEqual(c.recv(WAIT), Message(None, b"early"))
                self.assertEqual(c.recv(WAIT), Message(None, b"bin\x01"))
                spoof = c.recv(WAIT)
                self.assertIsNone(spoof.source)
                self.assertTrue(spoof.payload.startswith(b"switchboard/2 ok nonce=0000"))
                self.assertEqual(c.recv(WAIT), Message(42, b"a\0b"))
                self.assertEqual(c.recv(WAIT), Error(ErrorCode.not_representable, 42, "why!"))


if __name__ == "__main__":
    unittest.main()
