"""Choosing an executor by name, for the CLI's ``--executor`` and the app's ``PERP_EXECUTOR``.

Ray is optional: it is imported only when chosen, and a missing install is one line saying how to add it.
"""

from __future__ import annotations

import os

from ..errors import PerpError, check_choice
from .executor import Executor
from .local import LocalExecutor

EXECUTORS = ("local", "ray")
RAY_INSTALL = "pip install 'perp-lab[ray]' (or pip install ray)"


def make_executor(kind: str = "local", store_path: str | os.PathLike | None = None, *, max_parallel: int = 1,
                  address: str | None = None, num_cpus: float = 1, num_gpus: float = 1, retries: int = 0,
                  trust_remote_code: bool = False, field: str = "executor") -> Executor:
    """A LocalExecutor (``max_parallel`` workers) or a RayExecutor (``address``, per-run ``num_cpus`` /
    ``num_gpus``, ``retries``) on the store at ``store_path``; ``trust_remote_code``: runs whose config sets it
    may execute (see perp_engine.run.trust); ``field`` names the setting in errors."""
    if kind == "local":
        return LocalExecutor(store_path, max_parallel=max_parallel, trust_remote_code=trust_remote_code)
    check_choice(field, kind, EXECUTORS)
    try:
        from .ray_executor import RayExecutor
    except ModuleNotFoundError as err:
        if err.name != "ray" and not str(err.name).startswith("ray."):
            raise
        raise PerpError(field, f"ray is not installed; install it with {RAY_INSTALL}") from None
    return RayExecutor(address, store_path, num_cpus=num_cpus, num_gpus=num_gpus, retries=retries,
                       trust_remote_code=trust_remote_code)
