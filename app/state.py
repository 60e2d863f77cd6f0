"""The Streamlit side of the app's state: one store and one executor per store file (shared by every session
of this server), cached estimates, and the session keys that survive page changes.

``PERP_EXECUTOR`` chooses where runs execute: ``local`` (default) or ``ray`` (at ``PERP_RAY_ADDRESS``, else
``$RAY_ADDRESS``, else the cluster started on this machine, else a new local Ray instance).

Widget keys are dropped when a page is left, so cross-page state lives in the store or in the plain session keys
below, which no widget owns.
"""

from __future__ import annotations

import os

import streamlit as st

from perp_engine.config import RunConfig
from perp_engine.errors import PerpError
from perp_engine.jobs import Executor, make_executor
from perp_engine.model.load import resolve_device
from perp_engine.resources.estimate import Estimate, estimate_run
from perp_engine.resources.memory_model import MemoryPlan, plan_memory
from perp_engine.run.preflight import Preflight
from perp_engine.store import RunStore, default_store_path

LAUNCHED = "launched_runs"  # run ids launched from this session, newest first
SELECTED = "selected_runs"  # run ids selected on Compare; Layers starts from them
SWEEP = "watched_sweep"  # the sweep the Sweep page follows
UPLOADS = "uploaded_texts"  # paths of text files uploaded in this session
PREFLIGHT_MEMORY_S = 600  # how long the pre-run checker keeps model configs and tokenizers it read
MEMORY_PLAN_S = 60  # how long a memory plan (which compares with the memory free now) is reused
PREFLIGHT_RESULT_S = 60  # how long one config's check result is reused (a model folder may appear meanwhile)
LOADED = "loaded_run"  # the run whose settings the Experiment form was last filled with
FROM_QUERY = "from"  # Experiment's ?from=12: fill the form with run 12's settings (survives a reload)


@st.cache_resource(show_spinner=False)
def _store(path: str) -> RunStore:
    return RunStore(path)


@st.cache_resource(show_spinner=False)
def _executor(path: str, kind: str, address: str | None) -> Executor:
    return make_executor(kind, path, address=address, field="PERP_EXECUTOR")


def store() -> RunStore:
    """The run store of ``$PERP_STORE`` (or the default), opened once per server."""
    return _store(str(default_store_path()))


def executor() -> Executor:
    """The executor ``$PERP_EXECUTOR`` names (PerpError for an unknown name or a missing Ray install). Leaving a
    page, reloading or closing the tab never stops a run: local runs go to detached worker processes, Ray runs
    are driven by this server process (stopping the server cancels them)."""
    kind = os.environ.get("PERP_EXECUTOR", "").strip().lower() or "local"
    return _executor(str(default_store_path()), kind, os.environ.get("PERP_RAY_ADDRESS") or None)


@st.cache_resource(show_spinner=False)
def device_label() -> str:
    """The device runs use with ``device=auto``, with the GPU's name when there is one."""
    import torch

    device = resolve_device("auto")
    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return f"CPU ({torch.get_num_threads()} threads)"


@st.cache_data(show_spinner=False, max_entries=256)
def estimate(config_json: str) -> tuple[Estimate | None, str | None]:
    """``estimate_run`` of a config, cached with its failure (an unreadable model is not retried each rerun)."""
    try:
        return estimate_run(RunConfig.from_json(config_json)), None
    except PerpError as err:
        return None, str(err)


@st.cache_data(show_spinner=False, max_entries=256, ttl=MEMORY_PLAN_S)
def memory_plan(config_json: str) -> tuple[MemoryPlan | None, str | None]:
    """``plan_memory`` of a config (predicted peaks with each offload mode, what the device holds now), kept
    briefly: the free memory it compares with changes."""
    try:
        return plan_memory(RunConfig.from_json(config_json)), None
    except PerpError as err:
        return None, str(err)


@st.cache_resource(show_spinner=False, ttl=PREFLIGHT_MEMORY_S)
def _checker() -> Preflight:
    return Preflight()


@st.cache_data(show_spinner="Checking the run…", max_entries=256, ttl=PREFLIGHT_RESULT_S)
def preflight(config_json: str) -> tuple[list[str], str | None]:
    """``(warnings, None)`` when the config can run here, ``([], reason)`` when it cannot (the pre-run checks of
    ``perp run``: model, device, rank, N:M, context, text), kept briefly so a rerun does not repeat them."""
    try:
        return _checker().check(RunConfig.from_json(config_json)), None
    except PerpError as err:
        return [], str(err)


def session_list(key: str) -> list:
    """A list kept in the session under a non-widget key."""
    return st.session_state.setdefault(key, [])


def remember_launch(run_id: int) -> None:
    """Keep a launched run in this session, and in the page address so a reload shows its settings again."""
    launched = session_list(LAUNCHED)
    launched.insert(0, run_id)
    st.session_state[LOADED] = run_id
    st.query_params[FROM_QUERY] = str(run_id)
