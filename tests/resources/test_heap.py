"""perp_engine.resources.heap: the glibc tunables the tool's processes start with, and what they do to a retraining's heap."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from perp_engine.jobs.local import LocalExecutor
from perp_engine.resources import heap

REPO = Path(__file__).resolve().parents[2]
OLD, NEW = ("glibc", "2.36"), ("glibc", "2.39")
BOTH = "glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0"
needs_old_glibc = pytest.mark.skipif(not heap.needs_tuning(), reason="this C library needs no tunables")


@pytest.mark.parametrize("libc, before, after", [
    (OLD, None, BOTH),
    (OLD, "glibc.malloc.arena_max=2", "glibc.malloc.arena_max=2:" + BOTH),
    (OLD, "glibc.malloc.tcache_count=7", "glibc.malloc.tcache_count=7:glibc.malloc.mxfast=0"),  # the user's wins
    (OLD, BOTH, BOTH),
    (("glibc", "2.17"), None, BOTH),
    (NEW, None, None),
    (("glibc", "2.41"), "glibc.malloc.arena_max=2", "glibc.malloc.arena_max=2"),
    (("", ""), None, None),  # musl, or a libc platform.libc_ver cannot name
    (("glibc", "unknown"), None, None),
])
def test_tuned_environ(monkeypatch, libc, before, after):
    monkeypatch.setattr(sys, "platform", "linux")
    env = {"PATH": "/bin"} if before is None else {"PATH": "/bin", "GLIBC_TUNABLES": before}
    tuned = heap.tuned_environ(env, libc)
    assert tuned.get("GLIBC_TUNABLES") == after
    assert tuned["PATH"] == "/bin" and env.get("GLIBC_TUNABLES") == before  # a copy; the rest kept


@pytest.mark.parametrize("libc, before, variables", [
    (OLD, None, {"GLIBC_TUNABLES": BOTH}),
    (OLD, "glibc.malloc.tcache_count=7", {"GLIBC_TUNABLES": "glibc.malloc.tcache_count=7:glibc.malloc.mxfast=0"}),
    (NEW, None, {}),
    (NEW, "glibc.malloc.arena_max=2", {}),  # nothing to add: the worker's own environment decides
    (("", ""), None, {}),
])
def test_worker_env_vars(monkeypatch, libc, before, variables):
    monkeypatch.setattr(sys, "platform", "linux")
    env = {"PATH": "/bin"} if before is None else {"PATH": "/bin", "GLIBC_TUNABLES": before}
    assert heap.worker_env_vars(env, libc) == variables


def test_no_tunables_off_linux(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert not heap.needs_tuning(OLD)
    assert "GLIBC_TUNABLES" not in heap.tuned_environ({}, OLD)


def test_local_workers_start_with_the_tunables(monkeypatch, tmp_path):
    monkeypatch.setattr(heap, "needs_tuning", lambda libc=None: True)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    seen = {}

    class Started:
        pid = 12345

    def popen(args, **kwargs):
        seen.update(args=args, env=kwargs["env"])
        return Started()

    monkeypatch.setattr("perp_engine.jobs.local.subprocess.Popen", popen)
    assert LocalExecutor(tmp_path / "runs.sqlite")._spawn() == 12345
    assert seen["env"]["GLIBC_TUNABLES"] == BOTH
    assert seen["args"][1:3] == ["-m", "perp_engine.jobs.worker"]


@needs_old_glibc
def test_perp_command_starts_over_once_with_the_tunables():
    """The ``perp`` entry (main with no arguments) re-executes itself with the tunables, then runs the command."""
    script = ("import os, sys; print('before' if 'PERP_HEAP_REEXEC' not in os.environ else "
              "os.environ['GLIBC_TUNABLES'], flush=True); from perp_engine.cli import main; sys.exit(main())")
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", heap.REEXEC_MARK)}
    proc = subprocess.run([sys.executable, "-c", script, "--help"], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["before", BOTH]  # one start over, not more
    assert any(line.startswith("usage: perp") for line in lines)


FORWARD_FREE_HEAP = """
import ctypes, torch
from transformers import LlamaConfig, LlamaForCausalLM
from perp_engine.repair.retrain import retrain

class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
torch.manual_seed(0)
torch.set_num_threads(2)
config = LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=12, num_attention_heads=9,
                     num_key_value_heads=3, vocab_size=4096, tie_word_embeddings=True)
model = LlamaForCausalLM(config)
for name, param in model.named_parameters():
    param.requires_grad_("norm" in name)
free = []
def at_forward_end(module, args, out):
    if torch.is_grad_enabled():
        free.append(libc.mallinfo2().fordblks)
model.model.norm.register_forward_hook(at_forward_end)
retrain(model, torch.randint(0, 4096, (8, 256)), steps=2, lr=1e-3)
print(max(free))
"""


@needs_old_glibc
def test_tunables_keep_a_retraining_forward_from_fragmenting_the_heap():
    """The embedded model's block shapes (12 blocks, 4 x 256 tokens), norms trained: at the end of each forward
    pass the heap holds the kept activations plus what is free in it; with the tunables much less is free."""
    def free_heap(tunables: str | None) -> int:
        env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
        env["PYTHONPATH"] = str(REPO)
        if tunables:
            env["GLIBC_TUNABLES"] = tunables
        proc = subprocess.run([sys.executable, "-c", FORWARD_FREE_HEAP], capture_output=True, text=True, env=env,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return int(proc.stdout.split()[-1])

    untuned, tuned = free_heap(None), free_heap(BOTH)
    assert tuned < 0.8 * untuned, (tuned >> 20, untuned >> 20)
    assert untuned - tuned > 30 * 2**20
