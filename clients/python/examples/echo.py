"""An echo service: every message it gets goes back to its sender.

    python3 echo.py HOST PORT [TOKEN]
"""
import sys

import switchboard


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    token = sys.argv[3] if len(sys.argv) > 3 else None
    with switchboard.Client.connect(host, port, token=token) as c:
        print(f"echo service: id {c.id}", flush=True)
        try:
            while True:
                event = c.recv()  # waits for the next message or error
                if isinstance(event, switchboard.Message):
                    if event.source is not None:  # None: sent before we upgraded, cannot answer
                        c.send(event.source, event.payload)
                else:
                    print("echo service:", switchboard.describe(event), file=sys.stderr)
        except switchboard.ConnectionClosed as e:
            print("echo service:", e, file=sys.stderr)


if __name__ == "__main__":
    main()
