"""systemd's notify protocol: READY=1, WATCHDOG=1 and STOPPING=1 over NOTIFY_SOCKET."""

from __future__ import annotations

import logging
import os
import socket

__all__ = ["SystemdNotifier"]

logger = logging.getLogger("healthfile")


class SystemdNotifier:
    """Send sd_notify messages to the socket named by ``NOTIFY_SOCKET``, if there is one.

    The socket is a Unix datagram socket; a name starting with ``@`` is a Linux abstract
    socket. Sends never block (a full queue drops the message) and never raise: a monitor
    that cannot be told is logged once, not a reason to stop the service. Where there are
    no Unix sockets (Windows), every send is such a logged no-op.
    """

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
        self.address: str | bytes | None
        if not address:
            self.address = None
        elif address.startswith("@"):
            self.address = b"\0" + address[1:].encode()
        else:
            self.address = address
        self._socket: socket.socket | None = None
        self._error: str | None = None

    def __repr__(self) -> str:
        return f"<SystemdNotifier address={self.address!r}>"

    @property
    def enabled(self) -> bool:
        """True when NOTIFY_SOCKET names a socket."""
        return self.address is not None

    def notify(self, message: str) -> bool:
        """Send one message (``"READY=1"``); return whether it was sent."""
        if self.address is None:
            return False
        family = getattr(socket, "AF_UNIX", None)
        if family is None:  # Windows: no Unix sockets, so no systemd to tell
            self._log_once("this platform has no Unix sockets")
            return False
        try:
            if self._socket is None:
                # Python creates sockets non-inheritable already: no SOCK_CLOEXEC (not on macOS).
                self._socket = socket.socket(family, socket.SOCK_DGRAM)
                self._socket.setblocking(False)
            self._socket.sendto(message.encode(), self.address)
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the socket's path
            self._log_once(f"{type(exc).__name__}: {exc}")
            return False
        self._error = None
        return True

    def _log_once(self, error: str) -> None:
        """Log why a message could not be sent, unless the last failure was the same."""
        if error != self._error:
            logger.warning("cannot notify systemd at %r: %s", self.address, error)
        self._error = error

    def close(self) -> None:
        """Close the socket (a later notify() opens a new one)."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
