#!/usr/bin/env python3
"""wait_smtp.py HOST PORT [SECONDS]: exit 0 once something on HOST:PORT sends a
220 greeting, 1 after SECONDS (default 10)."""
import socket
import sys
import time


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    deadline = time.monotonic() + (float(sys.argv[3]) if len(sys.argv) > 3 else 10.0)
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1.0) as s:
                if s.recv(512).startswith(b"220"):
                    s.sendall(b"QUIT\r\n")
                    return 0
        except OSError:
            pass
        time.sleep(0.05)
    return 1


if __name__ == "__main__":
    sys.exit(main())
