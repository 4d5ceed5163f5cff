"""Client for the switchboard TCP message router, protocol v2.

    import switchboard
    with switchboard.Client.connect("127.0.0.1", 8080) as c:
        c.send(7, b"hello")
        event = c.recv(timeout=5.0)   # Message(source, payload) or Error(code, subject, reason)

Standard library only; Python 3.9 or later. See docs/CLIENTS.md.
"""

from .client import (
    AuthError,
    Client,
    ConnectionClosed,
    Error,
    ErrorCode,
    Message,
    NotV2Error,
    ProtocolError,
    SwitchboardError,
    SwitchboardTimeout,
    describe,
)

__all__ = [
    "AuthError",
    "Client",
    "ConnectionClosed",
    "Error",
    "ErrorCode",
    "Message",
    "NotV2Error",
    "ProtocolError",
    "SwitchboardError",
    "SwitchboardTimeout",
    "describe",
]
