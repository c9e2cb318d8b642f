"""The test network guard: sockets may connect to loopback (and unix sockets) only, so no
test can reach a real model, or anything else off this machine.

The test session installs it when conftest.py is imported; Python subprocesses of tests
get it through PYTHONPATH, where this file is their `sitecustomize`."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


class NetworkBlocked(OSError):
    """A test tried to connect beyond loopback."""


def _is_loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if not isinstance(host, str):
        return False
    if host == "" or host.lower() in LOOPBACK_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return ip.is_loopback or ip.is_unspecified  # 0.0.0.0 is this machine


def _check(family: int, address: Any) -> None:
    if family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
        raise NetworkBlocked(f"the test network guard blocks connecting to {address!r}")


def install() -> None:
    if getattr(socket.socket.connect, "_archlab_guard", False):
        return
    connect, connect_ex, getaddrinfo = (
        socket.socket.connect,
        socket.socket.connect_ex,
        socket.getaddrinfo,
    )

    def guarded_connect(self: socket.socket, address: Any) -> None:
        _check(self.family, address)
        connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        _check(self.family, address)
        return connect_ex(self, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        # a name lookup is where a remote connection starts; failing here fails fast
        if host is not None and not _is_loopback(host):
            raise NetworkBlocked(f"the test network guard blocks looking up {host!r}")
        return getaddrinfo(host, *args, **kwargs)

    guarded_connect._archlab_guard = True  # type: ignore[attr-defined]
    socket.socket.connect = guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = guarded_getaddrinfo


install()
