"""Free TCP ports for the listeners a run starts (Serve's HTTP port, HAProxy's stats and metrics
ports, Serve's fallback proxy, baseline servers)."""

import random
import socket

# Below the kernel's ephemeral range (32768 and up), which Ray's own processes draw from all the
# time: a port probed there may be taken by the time the listener that wants it starts.
# bench/setup.sh picks its servers' ports from 20000 up.
PORT_LOW = 10_000
PORT_HIGH = 20_000

# Every port handed out by this process. A port is only probed, not held, until its listener
# starts (HAProxy's, maybe minutes later), so without this two callers could be given the same
# one: Ray's metrics port or HAProxy's stats port taking HAProxy's metrics port stops Serve from
# starting.
_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port nothing listens on right now and that no caller in this process was given."""
    while True:
        port = random.randrange(PORT_LOW, PORT_HIGH)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
