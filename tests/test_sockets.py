"""Plain-http sockets keep their timeouts in the kernel (fetcher.http.sockets): the same
TimeoutError when one runs out, the same non-blocking mode for a zero timeout, and every
plain-http connection a session opens is one of them."""

import socket
import struct
import time

import pytest

from fetcher.http.environment import Environment
from fetcher.http.request import EffectiveRequest
from fetcher.http.session import close_session, make_session
from fetcher.http.sockets import KernelTimeoutSocket, adopted
from fetcher.settings import Settings


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


def test_a_timeout_is_the_kernels_and_the_socket_blocks(pair):
    left, right = pair
    assert type(left) is KernelTimeoutSocket
    left.settimeout(2.5)
    assert left.gettimeout() == 2.5
    assert socket.socket.gettimeout(left) is None  # blocking: no poll() before each call
    exchange(left, right)
    assert kernel_timeout(left, socket.SO_RCVTIMEO) == pytest.approx(2.5)
    assert kernel_timeout(left, socket.SO_SNDTIMEO) == pytest.approx(2.5)
    left.settimeout(None)
    exchange(left, right)
    assert kernel_timeout(left, socket.SO_RCVTIMEO) == 0.0  # the kernel's "never"
    assert kernel_timeout(left, socket.SO_SNDTIMEO) == 0.0


def test_each_direction_keeps_the_timeout_it_was_last_used_with(pair):
    """urllib3 sets the connect timeout before sending and the read timeout before receiving:
    each reaches the kernel once, not at every change (which is four system calls a request)."""
    left, right = pair
    for _ in range(3):
        left.settimeout(10.0)
        left.sendall(b"request")
        left.settimeout(30.0)
        right.sendall(right.recv(100))
        assert left.recv_into(bytearray(100)) == 7
        assert kernel_timeout(left, socket.SO_SNDTIMEO) == pytest.approx(10)
        assert kernel_timeout(left, socket.SO_RCVTIMEO) == pytest.approx(30)


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
