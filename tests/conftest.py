import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
torch.set_num_threads(min(2, os.cpu_count() or 1))
os.environ["PERP_GALLERY"] = "off"  # each test sees only its own stores; the gallery tests turn it on


@pytest.fixture(params=["llama", "mistral", "qwen2", "opt", "gpt2"])
def tiny_model(request):
    from tiny_models import TINY_MODELS

    return TINY_MODELS[request.param]()


@pytest.fixture
def without_ray(monkeypatch):
    """Python as it is without Ray installed: ``import ray`` fails, and the modules that import it load again."""
    monkeypatch.setitem(sys.modules, "ray", None)
    for name in [n for n in sys.modules if n.startswith("perp_engine.jobs.ray_")]:
        monkeypatch.delitem(sys.modules, name)


@pytest.fixture(scope="session")
def ray_local(tmp_path_factory):
    """One local Ray instance for every Ray test (2 CPUs, no dashboard, a small object store), started once per
    session and only when a test asks for it. Its processes get their own PERP_HOME (each node's artifact cache
    lives there; the raylet passes its environment to the workers of every driver), which this returns."""
    import ray

    from perp_engine.resources.memory_meter import MIB

    home = tmp_path_factory.mktemp("ray-node-home")
    saved = {name: os.environ.get(name) for name in ("PERP_HOME", "RAY_USAGE_STATS_ENABLED")}
    os.environ.update(PERP_HOME=str(home), RAY_USAGE_STATS_ENABLED="0")
    try:
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * MIB, log_to_driver=False)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    yield home
    ray.shutdown()
