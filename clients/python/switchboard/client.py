"""The protocol v2 client (DESIGN.md section 1b of the switchboard repository).

On connect the server sends a 4-byte ID (v1). The client then sends a hello,
a v1 frame to 0xFFFFFFFF: ``switchboard/2 nonce=<random hex>[ token=T]``. Every
v1 delivery (payload + NUL) that arrives before the welcome carrying that
nonce is a message someone sent before the upgrade; it is returned by recv()
with ``source=None`` (v1 does not say who sent it). After the welcome
(``switchboard/2 ok nonce=N id=ID max_frame=B``) both directions use v2 frames:
``[u32 length L][u8 type][L-1 bytes]``.

A server that answers the hello with ``... unsupported``, closes the
connection, or sends no welcome within the timeout raises NotV2Error
("server does not speak protocol v2"): connecting never hangs.

A Client is meant for one thread at a time.
"""

import enum
import secrets
import select
import socket
import struct
import time
from collections import deque
from typing import Deque, List, NamedTuple, Optional, Union

SERVER_ID = 0xFFFFFFFF

_SEND = 0x01
_PING = 0x02
_DELIVER = 0x81
_PONG = 0x82
_ERROR = 0x83

# Bounds on what the client buffers from a misbehaving peer.
_MAX_HANDSHAKE_BUFFER = 64 << 20
_READ_CHUNK = 64 * 1024


class ErrorCode(enum.IntEnum):
    """ERROR frame codes (DESIGN.md 1b's table)."""

    no_route = 1  # subject: the destination; unknown, departed or not authenticated
    slow_consumer = 2  # subject: the destination; the frame was dropped
    not_representable = 3  # subject: a v1 destination; the payload holds a 0x00
    too_large = 4  # subject: the sender; the server closes the connection
    bad_frame = 5  # subject: 0; the server closes the connection


class Message(NamedTuple):
    """A message for this client; source is None for a pre-upgrade v1 delivery."""

    source: Optional[int]
    payload: bytes


class Error(NamedTuple):
    """An ERROR frame about a frame this client sent.

    code is an ErrorCode (or a plain int for a code this library does not know).
    """

    code: Union[ErrorCode, int]
    subject: int
    reason: str


class SwitchboardError(Exception):
    """Every failure of this library."""


class NotV2Error(SwitchboardError):
    """The server speaks protocol v1 only (or is not a switchboard server)."""


class AuthError(SwitchboardError):
    """The server requires a token and the one given (or none) is not listed."""


class ConnectionClosed(SwitchboardError):
    """The connection ended; events received before the end were returned first."""


class ProtocolError(SwitchboardError):
    """The server sent bytes that break the protocol."""


class SwitchboardTimeout(SwitchboardError, TimeoutError):
    """A wait (connect, send, ping) did not finish in time."""


def describe(error: Error) -> str:
    """One line for a person: 'no client 7 (no_route)'."""
    s = error.subject
    if error.code == ErrorCode.no_route:
        return f"no client {s} (no_route)"
    if error.code == ErrorCode.slow_consumer:
        return f"client {s} is not keeping up; the message was dropped (slow_consumer)"
    if error.code == ErrorCode.not_representable:
        return f"client {s} speaks protocol v1 and cannot receive a 0x00 byte (not_representable)"
    if error.code == ErrorCode.too_large:
        return "the message was over the server's max_frame; it closes the connection (too_large)"
    if error.code == ErrorCode.bad_frame:
        detail = f": {error.reason}" if error.reason else ""
        return f"the server rejected a malformed frame{detail}; it closes the connection (bad_frame)"
    return f"error code {int(error.code)} about client {s}" + (f": {error.reason}" if error.reason else "")


def _valid_token(token: str) -> bool:
    return 1 <= len(token) <= 256 and all(0x21 <= ord(ch) <= 0x7E for ch in token)


class _Deadline:
    def __init__(self, timeout: Optional[float]):
        self.end = None if timeout is None else time.monotonic() + max(timeout, 0.0)

    def left(self) -> Optional[float]:
        return None if self.end is None else max(self.end - time.monotonic(), 0.0)

    def passed(self) -> bool:
        return self.end is not None and time.monotonic() >= self.end


class Client:
    """A connection to a switchboard server that has completed the v2 upgrade."""

    def __init__(self, sock: socket.socket, peer: str, timeout: float):
        # Use Client.connect(); this only sets up the state.
        self._sock = sock
        self._peer = peer
        self._timeout = timeout
        self._in = bytearray()
        self._events: Deque[Union[Message, Error]] = deque()
        self._pongs: Deque[bytes] = deque()
        self._closed_reason: Optional[str] = None
        self._nonce = secrets.token_hex(16)
        self._next_ping = 0
        self._had_token = False
        self.id = 0
        self.max_frame = 0

    # ---- connecting

    @classmethod
    def connect(cls, host: str, port: int, token: Optional[str] = None, timeout: float = 5.0) -> "Client":
        """Connects, reads the ID, sends the hello and waits for the welcome, all within timeout seconds.

        host may be a name or an IPv4/IPv6 literal. Raises NotV2Error, AuthError,
        SwitchboardTimeout or SwitchboardError (cannot resolve or connect, bad token).
        """
        if token is not None and not _valid_token(token):
            raise SwitchboardError("a token must be 1 to 256 characters between '!' and '~' (no spaces)")
        deadline = _Deadline(timeout)
        peer = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except socket.timeout:
            raise SwitchboardTimeout(f"cannot connect to {peer}: no answer within {timeout} s") from None
        except OSError as e:
            raise SwitchboardError(f"cannot connect to {peer}: {e.strerror or e}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        client = cls(sock, peer, timeout)
        try:
            client._handshake(token, deadline, timeout)
        except BaseException:
            client.close()
            raise
        return client

    def _handshake(self, token: Optional[str], deadline: _Deadline, timeout: float) -> None:
        while len(self._in) < 4:
            if self._closed_reason is not None:
                raise ConnectionClosed(
                    f"{self._peer} closed the connection before sending an ID ({self._closed_reason})")
            if not self._read_some(deadline):
                raise SwitchboardError(
                    f"{self._peer} sent no ID within {timeout} s: is it a switchboard server?")
        (self.id,) = struct.unpack(">I", bytes(self._in[:4]))
        del self._in[:4]

        hello = "switchboard/2 nonce=" + self._nonce
        if token is not None:
            hello += " token=" + token
            self._had_token = True
        self._write_all(struct.pack(">I", SERVER_ID) + hello.encode("ascii") + b"\0", deadline)

        scan = 0
        while True:
            nul = self._in.find(b"\0", scan)
            if nul >= 0:
                payload = bytes(self._in[:nul])
                del self._in[: nul + 1]
                scan = 0
                if self._take_hello_reply(payload):
                    break
                continue
            scan = len(self._in)
            if len(self._in) > _MAX_HANDSHAKE_BUFFER:
                raise ProtocolError(f"{self._peer} sent over 64 MiB without a frame end before the welcome")
            if self._closed_reason is not None:
                raise NotV2Error(
                    f"server does not speak protocol v2: {self._peer} closed the connection "
                    f"after the hello ({self._closed_reason})")
            if not self._read_some(deadline):
                raise NotV2Error(
                    f"server does not speak protocol v2: {self._peer} sent no welcome within {timeout} s")
        self._decode()  # v2 frames right behind the welcome

    def _take_hello_reply(self, payload: bytes) -> bool:
        """The welcome (True), a refusal of our hello (raises), or a pre-upgrade message."""
        words = payload.split(b" ")
        own = b"nonce=" + self._nonce.encode("ascii")
        ours = len(words) >= 3 and words[0] == b"switchboard/2" and own in words[2:]
        if ours and words[1] == b"ok":
            fields = dict(w.split(b"=", 1) for w in words[2:] if b"=" in w)
            try:
                ident = int(fields[b"id"].decode("ascii"))
                max_frame = int(fields[b"max_frame"].decode("ascii"))
            except (KeyError, ValueError, UnicodeDecodeError):
                raise ProtocolError(f"{self._peer} sent a malformed welcome: {payload!r}") from None
            if not (0 <= ident <= 0xFFFFFFFF) or max_frame <= 0:
                raise ProtocolError(f"{self._peer} sent a malformed welcome: {payload!r}")
            self.id, self.max_frame = ident, max_frame
            return True
        if ours and words[1] == b"error":
            reason = next((w for w in reversed(words[2:]) if b"=" not in w), b"").decode("ascii", "replace")
            if reason in ("unsupported", "unsupported_version"):
                raise NotV2Error(
                    f"server does not speak protocol v2: {self._peer} answered the hello with '{reason}'")
            if reason == "unauthorized":
                what = "refused the token" if self._had_token else "requires a token"
                raise AuthError(f"{self._peer} {what} (unauthorized)")
            raise SwitchboardError(f"{self._peer} refused the hello: '{reason}'")
        self._events.append(Message(None, payload))
        return False

    # ---- the API

    def send(self, destination: int, data: bytes, timeout: Optional[float] = None) -> None:
        """Sends data (any bytes, up to max_frame) to destination.

        Blocks until the kernel took it (reading what arrives meanwhile), at most
        timeout seconds (default: the connect timeout), else SwitchboardTimeout.
        """
        data = bytes(data)
        if len(data) > self.max_frame:
            raise SwitchboardError(
                f"a message of {len(data)} bytes is over the server's max_frame ({self.max_frame} bytes)")
        if not 0 <= destination <= 0xFFFFFFFF:
            raise SwitchboardError(f"destination {destination} is not a 32-bit client ID")
        frame = struct.pack(">IBI", len(data) + 5, _SEND, destination) + data
        self._write_all(frame, _Deadline(self._timeout if timeout is None else timeout))

    def recv(self, timeout: Optional[float] = None) -> Optional[Union[Message, Error]]:
        """The next Message or Error; None if none came within timeout seconds (None: wait for ever).

        Raises ConnectionClosed once the connection has ended and every event before
        the end was returned.
        """
        deadline = _Deadline(timeout)
        while True:
            if self._events:
                return self._events.popleft()
            if self._closed_reason is not None:
                raise ConnectionClosed(f"{self._peer} closed the connection ({self._closed_reason})")
            if not self._read_some(deadline):
                return None
            self._decode()
            if not self._events and self._closed_reason is None and deadline.passed():
                return None

    def ping(self, timeout: Optional[float] = None) -> None:
        """A barrier: sends a PING with a unique body and waits for its PONG.

        When it returns, every frame sent before has been routed and every ERROR
        about them is queued for recv(). Waits at most timeout seconds (default:
        the connect timeout), then raises SwitchboardTimeout.
        """
        timeout = self._timeout if timeout is None else timeout
        deadline = _Deadline(timeout)
        body = f"{self._nonce[:16]}-{self._next_ping}".encode("ascii")
        self._next_ping += 1
        self._write_all(struct.pack(">IB", len(body) + 1, _PING) + body, deadline)
        while True:
            while self._pongs:
                if self._pongs.popleft() == body:  # PONGs come in PING order: earlier ones are stale
                    return
            if self._closed_reason is not None:
                raise ConnectionClosed(
                    f"{self._peer} closed the connection before answering a PING ({self._closed_reason})")
            if not self._read_some(deadline):
                raise SwitchboardTimeout(f"no PONG from {self._peer} within {timeout} s")
            self._decode()

    def fileno(self) -> int:
        """The socket, for select() beside other files (check pending() too)."""
        return self._sock.fileno()

    def pending(self) -> bool:
        """True when recv(0) has an event without reading the socket."""
        return bool(self._events)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- bytes in and out

    def _check_open(self) -> socket.socket:
        if self._sock is None:
            raise SwitchboardError("the client is closed")
        return self._sock

    def _read_some(self, deadline: _Deadline) -> bool:
        """Reads what arrives before the deadline; False on timeout. Notes EOF and resets."""
        sock = self._check_open()
        readable, _, _ = select.select([sock], [], [], deadline.left())
        if not readable:
            return False
        try:
            data = sock.recv(_READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError as e:
            self._closed_reason = e.strerror or str(e)
            return True
        if not data:
            self._closed_reason = "end of stream"
        self._in += data
        return True

    def _decode(self) -> None:
        max_length = max(self.max_frame, 64 * 1024) + 5
        pos = 0
        buf = self._in
        while len(buf) - pos >= 5:
            length, kind = struct.unpack_from(">IB", buf, pos)
            if length == 0 or length > max_length:
                raise ProtocolError(f"{self._peer} broke protocol v2: a frame length of {length}")
            if len(buf) - pos < 4 + length:
                break
            body = bytes(buf[pos + 5: pos + 4 + length])
            pos += 4 + length
            if kind == _DELIVER:
                if len(body) < 4:
                    raise ProtocolError(f"{self._peer} broke protocol v2: a DELIVER without a source")
                self._events.append(Message(struct.unpack(">I", body[:4])[0], body[4:]))
            elif kind == _PONG:
                self._pongs.append(body)
            elif kind == _ERROR:
                if len(body) < 5:
                    raise ProtocolError(f"{self._peer} broke protocol v2: a short ERROR frame")
                code, subject = struct.unpack(">BI", body[:5])
                try:
                    code = ErrorCode(code)
                except ValueError:
                    pass  # a code a later server may add: kept as an int
                self._events.append(Error(code, subject, body[5:].decode("utf-8", "replace")))
            # other types: ones a later server version may add, skipped
        del buf[:pos]

    def _write_all(self, data: bytes, deadline: _Deadline) -> None:
        sock = self._check_open()
        view = memoryview(data)
        total = len(view)
        while view:
            try:
                n = sock.send(view)
                view = view[n:]
                continue
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as e:
                self._closed_reason = e.strerror or str(e)
                raise ConnectionClosed(f"cannot send to {self._peer}: {self._closed_reason}") from None
            # Read while waiting, so two clients sending to each other never deadlock.
            can_read = self._closed_reason is None and len(self._in) < _MAX_HANDSHAKE_BUFFER
            readable, writable, _ = select.select([sock] if can_read else [], [sock], [], deadline.left())
            if not readable and not writable:
                if len(view) == total:
                    raise SwitchboardTimeout(f"{self._peer} is not reading from this client: the frame was not sent")
                self.close()  # half a frame is on the wire: whatever came next would be misread
                raise SwitchboardTimeout(
                    f"{self._peer} stopped reading in the middle of a frame; the connection is closed")
            if readable:
                self._read_some(_Deadline(0))
                if self.max_frame:  # after the handshake only: before it, bytes are v1
                    self._decode()
