"""Is the process that claimed a run still alive? Identity is (host, pid, start time), so a recycled pid or a
zombie left by a killed worker does not pass for the original process."""

from __future__ import annotations

import socket

import psutil


def hostname() -> str:
    return socket.gethostname()


def start_time(pid: int) -> float | None:
    """The creation time of process ``pid``, or None when it is gone or a zombie."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def is_alive(pid: int | None, pid_start: float | None) -> bool:
    """True when ``pid`` runs and, if ``pid_start`` was recorded, is the same process that recorded it."""
    if pid is None:
        return False
    started = start_time(pid)
    if started is None:
        return False
    return pid_start is None or abs(started - pid_start) < 1.0
