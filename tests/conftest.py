import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(params=["llama", "mistral", "qwen2", "opt", "gpt2"])
def tiny_model(request):
    from tiny_models import TINY_MODELS

    return TINY_MODELS[request.param]()
