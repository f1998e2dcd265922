"""maxconn: above the limit, clients wait in the kernel's accept queue (HAProxy's
behaviour) instead of being refused, and are served as soon as a slot frees."""

import socket

import pytest

from conftest import addr, free_port

SERVICE = """
  service = function(applet)
    applet:set_status(200)
    applet:start_response()
    applet:send("ok\\n")
  end,
"""


def request(sock):
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")


def read_response(sock, timeout):
    sock.settimeout(timeout)
    data = b""
    while b"ok\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.parametrize("where", ["global", "frontend"])
def test_maxconn_queues_then_serves(crescent, where):
    port = free_port()
    glob = "maxconn = 1," if where == "global" else ""
    fe = "maxconn = 1," if where == "frontend" else ""
    crescent(
        f"""
global {{ threads = 1, {glob} }}
listen "one" {{
  bind {{ "{addr(port)}" }},
  {fe}
  {SERVICE}
}}
""",
        ports=[port],
    )
    first = socket.create_connection(("127.0.0.1", port), timeout=5)
    request(first)
    assert read_response(first, 5).startswith(b"HTTP/1.1 200")  # the slot is now held (keep-alive)

    second = socket.create_connection(("127.0.0.1", port), timeout=5)  # kernel accepts it
    request(second)
    # While the first connection holds the only slot, the second is not served.
    with pytest.raises(socket.timeout):
        read_response(second, 0.5)

    first.close()  # frees the slot: the waiting connection is accepted and served
    assert read_response(second, 5).startswith(b"HTTP/1.1 200")
    second.close()
