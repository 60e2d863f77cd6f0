"""The C heap settings of the processes that run pipelines, where the C library needs them (glibc before 2.39).

PyTorch allocates every CPU tensor with ``posix_memalign(64, n)``, which in glibc before 2.39 cuts the aligned
block out of a larger free chunk and frees the slivers around it; those, like every small freed chunk, go to the
per-thread cache (tcache) and the fast bins, which do not merge them with their neighbours. Freed tensors' space
then stays cut into pieces the next tensors do not fit, and the heap grows (the pattern of sourceware bug 14581;
glibc 2.39 merges memalign's slivers back). Retraining's forward pass frees temporaries between the activations
it keeps, so the pieces pile up (tests/resources/test_heap.py reads the free heap at the end of such a forward pass with
and without the settings). What the run computes does not change; bench/retrain_bench.py measures the runs'
memory and time with these settings (README: Retraining cost).

The settings are glibc tunables, which a process reads once when it starts: they go into the environment of the
processes this tool starts (local workers, the ``perp`` command re-executing itself, and Ray tasks through their
``runtime_env``, whose variables are in a Ray worker's environment when it starts), not into this one.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping

TUNABLES = {"glibc.malloc.tcache_count": "0", "glibc.malloc.mxfast": "0"}
FIXED_IN = (2, 39)
REEXEC_MARK = "PERP_HEAP_REEXEC"


def needs_tuning(libc: tuple[str, str] | None = None) -> bool:
    """True on Linux with a glibc older than 2.39 (``libc``: what ``platform.libc_ver()`` returns)."""
    if not sys.platform.startswith("linux"):
        return False
    name, version = libc if libc is not None else platform.libc_ver()
    try:
        return name == "glibc" and tuple(int(part) for part in version.split(".")[:2]) < FIXED_IN
    except ValueError:
        return False


def tuned_environ(env: Mapping[str, str], libc: tuple[str, str] | None = None) -> dict[str, str]:
    """A copy of ``env`` whose ``GLIBC_TUNABLES`` holds :data:`TUNABLES` where this C library needs them; a
    tunable already set there (by the user) keeps its value, and the others set there stay."""
    env = dict(env)
    if not needs_tuning(libc):
        return env
    current = [item for item in env.get("GLIBC_TUNABLES", "").split(":") if item]
    named = {item.split("=", 1)[0] for item in current}
    env["GLIBC_TUNABLES"] = ":".join(current + [f"{k}={v}" for k, v in TUNABLES.items() if k not in named])
    return env


def worker_env_vars(env: Mapping[str, str], libc: tuple[str, str] | None = None) -> dict[str, str]:
    """The variables to give a process that another program starts (a Ray task's ``runtime_env``):
    ``GLIBC_TUNABLES`` as :func:`tuned_environ` makes it from ``env``, or nothing where this C library needs none."""
    if not needs_tuning(libc):
        return {}
    return {"GLIBC_TUNABLES": tuned_environ(env, libc)["GLIBC_TUNABLES"]}


def reexec_tuned() -> None:
    """Start this process's command over with :func:`tuned_environ` (same pid, same arguments) when its
    environment lacks the settings; return when it has them or the C library does not need them. Call it before
    anything is printed or any file opened: whatever this process did is lost in the exec. It starts over once at
    most (``REEXEC_MARK`` in the environment), even where the C library drops the tunables from it."""
    env = tuned_environ(os.environ)
    if env != dict(os.environ) and REEXEC_MARK not in os.environ:
        os.execve(sys.executable, sys.orig_argv, {**env, REEXEC_MARK: "1"})
