"""The service's listening socket, bound before anything is loaded or announced."""

from __future__ import annotations

import errno
import logging
import socket

from jointspace.errors import JointspaceError


def bind_port(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``; a busy or forbidden port is one clear error."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as err:
        raise JointspaceError(f"cannot listen on host {host!r}: {err}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise JointspaceError(
                f"port {port} on {host} is already in use; stop what holds it or pick --port"
            ) from None
        raise JointspaceError(f"cannot listen on {host} port {port}: {err.strerror}") from None
    return sock


def run_on(sock: socket.socket, app) -> None:
    """Serve ``app`` on the bound ``sock`` until stopped; one JSON access line per request."""
    import uvicorn

    from jointspace.serve.middleware import access_log

    if not access_log.handlers:
        handler = logging.StreamHandler()  # stderr
        handler.setFormatter(logging.Formatter("%(message)s"))
        access_log.addHandler(handler)
    access_log.setLevel(logging.INFO)
    access_log.propagate = False  # exactly one line per request, whatever else logs
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
