"""Waiting on background workers (local processes, Ray tasks) in the job tests."""

from __future__ import annotations

import time

import pytest

TIMEOUT_S = 180  # a fresh worker (process or Ray task) imports torch and transformers; the machine may be busy


def wait_until(predicate, what: str, timeout: float = TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)
