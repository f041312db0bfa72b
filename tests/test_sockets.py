"""Plain-http sockets keep their timeouts in the kernel (fetcher.http.sockets): the same
TimeoutError when one runs out, the same non-blocking mode for a zero timeout, and every
plain-http connection a session opens is one of them."""

import errno
import socket
import struct
import threading
import time

import pytest
import urllib3
from urllib3.util.wait import wait_for_read

from fetcher.http.environment import Environment
from fetcher.http.request import EffectiveRequest
from fetcher.http.session import close_session, make_session
from fetcher.http.sockets import KernelTimeoutSocket, adopted
from fetcher.settings import Settings
from tests.servers import FaultServer, respond, wait_for


def kernel_timeout(sock, option):
    seconds, micros = struct.unpack("ll", sock.getsockopt(socket.SOL_SOCKET, option, 16))
    return seconds + micros / 1e6


@pytest.fixture
def pair():
    left, right = socket.socketpair()
    left.settimeout(5.0)
    left = adopted(left)
    yield left, right
    left.close()
    right.close()


def exchange(left, right):
    """One send and one receive on left."""
    left.sendall(b"x")
    assert right.recv(1) == b"x"
    right.sendall(b"y")
    assert left.recv_into(bytearray(1)) == 1


def send_more_than_fits(left, right, size=8 << 20):
    """A send from left that has to wait for right to read; returns what right read."""
    received = bytearray()

    def drain():
        while len(received) < size:
            chunk = right.recv(1 << 16)
            if not chunk:
                return
            received.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    data = bytes(range(256)) * (size // 256)
    left.sendall(data)
    reader.join(10)
    assert bytes(received) == data
    return received


def test_a_timeout_is_the_kernels_and_the_socket_blocks(pair):
    left, right = pair
    assert type(left) is KernelTimeoutSocket
    left.settimeout(2.5)
    assert left.gettimeout() == 2.5
    assert socket.socket.gettimeout(left) is None  # blocking: no poll() before each call
    exchange(left, right)
    assert kernel_timeout(left, socket.SO_RCVTIMEO) == pytest.approx(2.5)
    send_more_than_fits(left, right)
    assert kernel_timeout(left, socket.SO_SNDTIMEO) == pytest.approx(2.5)
    left.settimeout(None)
    exchange(left, right)
    send_more_than_fits(left, right)
    assert kernel_timeout(left, socket.SO_RCVTIMEO) == 0.0  # the kernel's "never"
    assert kernel_timeout(left, socket.SO_SNDTIMEO) == 0.0


def test_each_direction_keeps_the_timeout_it_was_last_used_with(pair):
    """urllib3 sets the connect timeout before sending and the read timeout before receiving:
    each reaches the kernel when a call of its direction needs it, not at every change (which
    is four system calls a request)."""
    left, right = pair
    for _ in range(3):
        left.settimeout(10.0)
        send_more_than_fits(left, right, 1 << 20)
        left.settimeout(30.0)
        right.sendall(b"answer")
        assert left.recv_into(bytearray(100)) == 6
        assert kernel_timeout(left, socket.SO_SNDTIMEO) == pytest.approx(10)
        assert kernel_timeout(left, socket.SO_RCVTIMEO) == pytest.approx(30)


def test_a_send_sets_the_send_timeout_and_not_the_receive_one(pair):
    left, right = pair
    left.settimeout(10.0)
    left.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert right.recv(100) == b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    assert kernel_timeout(left, socket.SO_SNDTIMEO) == pytest.approx(10)
    assert kernel_timeout(left, socket.SO_RCVTIMEO) == 0.0  # no receive yet


def test_a_send_to_a_peer_that_left_raises_as_pythons_does(pair):
    left, right = pair
    right.close()
    with pytest.raises(BrokenPipeError):
        left.sendall(b"x" * 100)


def test_a_receive_that_times_out_raises_timeouterror_after_the_timeout(pair):
    left, right = pair
    left.settimeout(0.3)
    buffer = bytearray(10)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="timed out"):
        left.recv_into(buffer)
    assert 0.25 <= time.monotonic() - started < 3
    right.sendall(b"hello")
    assert left.recv_into(buffer) == 5  # the socket still works after a timeout


def test_makefile_reads_see_the_timeout_not_an_end_of_data(pair):
    """socket.SocketIO reads EAGAIN as "no data yet": that must never reach http.client."""
    left, _ = pair
    left.settimeout(0.2)
    with pytest.raises(TimeoutError):
        left.makefile("rb").readline()


def test_a_send_the_peer_never_reads_times_out(pair):
    left, _ = pair
    left.settimeout(0.3)
    with pytest.raises(TimeoutError, match="timed out"):
        left.sendall(b"x" * 50_000_000)


def test_a_zero_timeout_is_non_blocking_as_pythons(pair):
    left, _ = pair
    left.settimeout(0)
    with pytest.raises(BlockingIOError):
        left.recv_into(bytearray(10))
    left.settimeout(1.0)
    assert socket.socket.gettimeout(left) is None


def test_a_tiny_timeout_never_becomes_no_timeout(pair):
    left, _ = pair
    left.settimeout(1e-9)
    with pytest.raises(TimeoutError):
        left.recv_into(bytearray(1))
    assert kernel_timeout(left, socket.SO_RCVTIMEO) > 0


def test_plain_http_connections_of_a_session_are_adopted(server):
    """The keep-alive server: the connection stays in the pool after the answer."""
    session = make_session(Settings(), environment=Environment())
    try:
        for _ in range(2):
            with session.fetch(EffectiveRequest("GET", server.url("/one")), (3, 7)) as response:
                assert response.status_code == 200
                response.raw.read()
        assert server.connections == 1
        pools = list(session.adapters["http://"].poolmanager.pools._container.values())
        connections = [pool.pool.queue[0] for pool in pools]
        assert [type(conn.sock) for conn in connections] == [KernelTimeoutSocket]
        assert kernel_timeout(connections[0].sock, socket.SO_RCVTIMEO) == pytest.approx(7)
    finally:
        close_session(session)


@pytest.fixture
def tcp_pair():
    """A connected loopback TCP pair, the client side adopted as soon as it is connected."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname(), timeout=5)
    server, _ = listener.accept()
    listener.close()
    client = adopted(client)
    yield client, server
    client.close()
    server.close()


def readable(sock) -> bool:
    """urllib3's own test: the socket would not block a read (data, end of stream, error)."""
    return wait_for_read(sock, timeout=0.0)


def until_readable(sock) -> None:
    deadline = time.monotonic() + 5
    while not readable(sock):
        assert time.monotonic() < deadline, "the bytes sent never arrived"
        time.sleep(0.001)


def test_quiet_says_what_poll_says_through_a_connections_life(tcp_pair):
    client, server = tcp_pair
    assert client.quiet() is True and not readable(client)
    client.sendall(b"GET / HTTP/1.1\r\n\r\n")
    server.recv(100)
    server.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    until_readable(client)
    assert client.quiet() is False  # an answer waiting
    reader = client.makefile("rb")
    assert reader.read(40) == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    assert client.quiet() is True and not readable(client)  # all of it read: reusable
    server.sendall(b"x")  # bytes nobody asked for
    until_readable(client)
    assert client.quiet() is False
    assert client.recv(1) == b"x"
    assert client.quiet() is True
    server.close()  # the peer's FIN
    until_readable(client)
    assert client.quiet() is False


def test_quiet_sees_a_reset(tcp_pair):
    client, server = tcp_pair
    server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    server.close()  # an RST
    until_readable(client)
    assert client.quiet() is False


def test_a_send_to_a_peer_that_reset_raises_what_a_plain_socket_raises():
    """The first send after an RST reports the reset (and consumes it): the error Python's own
    sendall raises, not the broken pipe a second send would see."""
    raised = []
    for adopt_it in (False, True):
        listener = socket.create_server(("127.0.0.1", 0))
        client = socket.create_connection(listener.getsockname(), timeout=5)
        server, _ = listener.accept()
        listener.close()
        if adopt_it:
            client = adopted(client)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        server.close()
        until_readable(client)
        with pytest.raises(OSError) as error:
            client.sendall(b"GET / HTTP/1.1\r\n\r\n")
        raised.append((type(error.value), error.value.errno))
        client.close()
    assert raised[1] == raised[0] == (ConnectionResetError, errno.ECONNRESET)


def test_a_partly_sent_body_continues_from_where_the_kernel_stopped(pair):
    left, right = pair
    left.settimeout(5.0)
    send_more_than_fits(left, right, 16 << 20)  # the first send takes what fits, then the rest


def test_quiet_cannot_tell_for_a_socket_that_is_not_tcp(pair):
    left, _ = pair
    assert left.quiet() is None


def test_reusing_a_kept_alive_connection_asks_no_poll(server, monkeypatch):
    """urllib3 checks a pooled connection before each reuse; for plain http the kernel is asked
    with getsockopt, which keeps the GIL (poll gives it up: two context switches at -j 16)."""
    polls = []
    real = urllib3.connection.wait_for_read
    monkeypatch.setattr(
        urllib3.connection, "wait_for_read", lambda *a, **k: polls.append(a) or real(*a, **k)
    )
    session = make_session(Settings(), environment=Environment())
    try:
        for _ in range(3):
            with session.fetch(EffectiveRequest("GET", server.url("/one")), (3, 7)) as response:
                response.raw.read()
        assert server.connections == 1
        assert polls == []
    finally:
        close_session(session)


def pooled_sockets(session):
    pools = session.adapters["http://"].poolmanager.pools._container.values()
    return [conn.sock for pool in pools for conn in pool.pool.queue if conn and conn.sock]


@pytest.mark.parametrize("end", ["close", "reset"])
def test_a_kept_alive_connection_the_server_ended_is_not_reused(end):
    """The server ends each connection after its answer without saying so: once its FIN (or
    RST) has arrived, the pooled connection is not reused, and every request gets its answer."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    session = make_session(Settings(), environment=Environment())
    try:
        with FaultServer(respond(answer, end)) as fault:
            for _ in range(3):
                with session.fetch(EffectiveRequest("GET", fault.url()), (3, 7)) as response:
                    assert response.raw.read() == b"ok"
                wait_for(lambda: all(map(readable, pooled_sockets(session))), "the end", 5)
                assert [sock.quiet() for sock in pooled_sockets(session)] == [False]
            assert fault.connections == 3
    finally:
        close_session(session)
