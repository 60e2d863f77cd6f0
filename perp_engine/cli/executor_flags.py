"""The flags that choose where runs execute (``--executor local|ray`` and Ray's settings), shared by
``perp run`` and ``perp sweep``."""

from __future__ import annotations

import argparse

from ..errors import PerpError
from ..jobs import EXECUTORS, Executor, make_executor

RAY_FLAGS = {"ray_address": "--ray-address", "ray_cpus": "--ray-cpus", "ray_gpus": "--ray-gpus", "retries": "--retries"}


def add_executor_flags(parser: argparse.ArgumentParser, local_help: str) -> None:
    group = parser.add_argument_group("where runs execute")
    group.add_argument("--executor", choices=EXECUTORS, default="local",
                       help=f"local: {local_help} (default); ray: Ray tasks on a cluster or a local Ray instance, "
                            "this command waiting for them (it drives them: Ctrl-C cancels them)")
    group.add_argument("--ray-address", metavar="ADDR",
                       help="Ray cluster to join: auto, HOST:PORT or ray://HOST:PORT (default: $RAY_ADDRESS, else "
                            "the cluster started on this machine with `ray start`, else a new local Ray instance)")
    group.add_argument("--ray-cpus", type=float, metavar="N", help="CPUs each run asks Ray for (default: 1)")
    group.add_argument("--ray-gpus", type=float, metavar="N",
                       help="GPUs each run asks Ray for when its device is cuda or auto and the cluster has GPUs "
                            "(default: 1)")
    group.add_argument("--retries", type=int, metavar="N",
                       help="Ray: rerun a run whose worker or node died up to N times, each attempt logged "
                            "(default: 0, the run is marked failed with the reason)")


def check_executor_flags(args: argparse.Namespace) -> None:
    """Ray's flags without ``--executor ray`` are an error, not silently ignored."""
    if args.executor != "ray":
        given = [flag for name, flag in RAY_FLAGS.items() if getattr(args, name) is not None]
        if given:
            raise PerpError("executor", f"Ray settings ({', '.join(given)}) need --executor ray")


def executor_from_args(args: argparse.Namespace, max_parallel: int = 1, trust_remote_code: bool = False) -> Executor:
    """The executor the flags ask for (see :func:`check_executor_flags`); ``trust_remote_code``: the command line
    gave it, so runs whose config sets it may execute."""
    check_executor_flags(args)
    return make_executor(args.executor, args.store, max_parallel=max_parallel, address=args.ray_address,
                         num_cpus=1 if args.ray_cpus is None else args.ray_cpus,
                         num_gpus=1 if args.ray_gpus is None else args.ray_gpus,
                         retries=args.retries or 0, trust_remote_code=trust_remote_code)
