"""A requester: sends TEXT to the service with ID SERVICE and prints its answer.

    python3 requester.py HOST PORT SERVICE TEXT [TOKEN]
"""
import sys

import switchboard


def main():
    host, port, service, text = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    token = sys.argv[5] if len(sys.argv) > 5 else None
    try:
        with switchboard.Client.connect(host, port, token=token) as c:
            c.send(service, text.encode())
            while True:
                event = c.recv(timeout=5.0)
                if event is None:
                    sys.exit("requester: no answer within 5 s")
                if isinstance(event, switchboard.Error):
                    sys.exit("requester: " + switchboard.describe(event))  # "no client 7 (no_route)"
                if event.source == service:
                    print(f"answer from {service}: {event.payload.decode(errors='replace')}")
                    return
    except switchboard.SwitchboardError as e:
        sys.exit(f"requester: {e}")


if __name__ == "__main__":
    main()
