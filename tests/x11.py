"""A private X display (Xvfb) and what tests do on it as a user or a window manager would.

Without Xvfb, xdotool or tkinter the tests that use it skip, unless
HEALTHFILE_REQUIRE_INTEGRATION=1 (set by .ci/run), when they fail.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import subprocess
from collections.abc import Iterator
from typing import Any

from helpers import integration_unavailable, require_module, require_program

DEADLINE = 30.0  # generous: slow CI machines, coverage


@contextlib.contextmanager
def xvfb_display() -> Iterator[str]:
    """A private Xvfb display (the server picks a free number), not listening on TCP."""
    require_module("tkinter", "the interpreter's Tk support, e.g. python3-tk")
    xvfb = require_program("Xvfb", package="xvfb")
    require_program("xdotool", package="xdotool")
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        [xvfb, "-displayfd", str(write_end), "-nolisten", "tcp", "-screen", "0", "800x600x24"],
        pass_fds=(write_end,),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    try:
        with os.fdopen(read_end) as announced:
            number = announced.readline().strip()
        if not number.isdigit():
            integration_unavailable(f"Xvfb did not start (exit {server.poll()})")
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(DEADLINE)


def x_run(display: str, *command: str) -> str:
    """Run an X client program on ``display``; its stdout."""
    completed = subprocess.run(
        command,
        env={**os.environ, "DISPLAY": display},
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=True,
    )
    return completed.stdout


def find_window(display: str, *search: str) -> int:
    """The id of the first window xdotool finds by ``search`` (``--name``, ``^title$``;
    ``--class``, ``^Tk$``: a Tk root of any title), once it is mapped."""
    [window, *_] = x_run(display, "xdotool", "search", "--sync", *search).split()
    return int(window)


class _ClientMessage(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("serial", ctypes.c_ulong),
        ("send_event", ctypes.c_int),
        ("display", ctypes.c_void_p),
        ("window", ctypes.c_ulong),
        ("message_type", ctypes.c_ulong),
        ("format", ctypes.c_int),
        ("data", ctypes.c_long * 5),
    ]


class _XEvent(ctypes.Union):
    _fields_ = [("xclient", _ClientMessage), ("pad", ctypes.c_long * 24)]


def request_close(display: str, window: int) -> None:
    """Send the window WM_DELETE_WINDOW, as a window manager does for the close button.

    xdotool's windowclose destroys the window instead, and wmctrl needs a window manager.
    """
    library = ctypes.util.find_library("X11")
    if library is None:
        integration_unavailable("libX11 not found")
    xlib: Any = ctypes.cdll.LoadLibrary(library)
    xlib.XOpenDisplay.restype = ctypes.c_void_p
    xlib.XOpenDisplay.argtypes = [ctypes.c_char_p]
    xlib.XInternAtom.restype = ctypes.c_ulong
    xlib.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    xlib.XSendEvent.argtypes = [
        ctypes.c_void_p,
        ctypes.c_ulong,
        ctypes.c_int,
        ctypes.c_long,
        ctypes.POINTER(_XEvent),
    ]
    xlib.XFlush.argtypes = [ctypes.c_void_p]
    xlib.XCloseDisplay.argtypes = [ctypes.c_void_p]
    connection = xlib.XOpenDisplay(display.encode())
    assert connection, f"cannot open display {display}"
    try:
        event = _XEvent()
        event.xclient.type = 33  # ClientMessage
        event.xclient.window = window
        event.xclient.message_type = xlib.XInternAtom(connection, b"WM_PROTOCOLS", False)
        event.xclient.format = 32
        event.xclient.data[0] = xlib.XInternAtom(connection, b"WM_DELETE_WINDOW", False)
        event.xclient.data[1] = 0  # CurrentTime
        assert xlib.XSendEvent(connection, window, False, 0, ctypes.byref(event))
        xlib.XFlush(connection)
    finally:
        xlib.XCloseDisplay(connection)
