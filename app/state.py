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
from perp_engine.store import GalleryStore, RunStore, default_store_path

from . import launches
from .run_sources import Runs, gallery_path

BROWSER = "browser_id"  # this browser's id (app/launches.py), read from its cookie or made for it
SELECTED = "selected_runs"  # references of the runs selected on Compare (12, g12); Layers starts from them
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


@st.cache_resource(show_spinner=False)
def _gallery(path: str) -> GalleryStore:
    return GalleryStore(path)


def gallery() -> GalleryStore | None:
    """The gallery opened read-only beside the store (``$PERP_GALLERY``, app/run_sources.py), or None."""
    path = gallery_path(default_store_path())
    return None if path is None else _gallery(str(path.resolve()))


def runs() -> Runs:
    """The user's runs and the gallery's, read as one (pages that list, chart or open runs)."""
    return Runs(store(), gallery())


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
def preflight(config_json: str) -> tuple[list[str], tuple[str, str] | None]:
    """``(warnings, None)`` when the config can run here, ``([], (field, reason))`` when it cannot (the pre-run
    checks of ``perp run``: model, device, rank, N:M, context, text; ``reason`` is the one-line ``field: ...``),
    kept briefly so a rerun does not repeat them."""
    try:
        return _checker().check(RunConfig.from_json(config_json)), None
    except PerpError as err:
        return [], (err.field, str(err))


def session_list(key: str) -> list:
    """A list kept in the session under a non-widget key."""
    return st.session_state.setdefault(key, [])


def browser_id() -> str:
    """This browser's id: from its cookie when it sent one, else a new one kept for the session (and stored in
    the cookie by :func:`keep_browser_id`)."""
    if BROWSER not in st.session_state:
        cookie = st.context.cookies.get(launches.COOKIE)
        st.session_state[BROWSER] = cookie if launches.valid_id(cookie) else launches.new_id()
    return st.session_state[BROWSER]


def keep_browser_id() -> None:
    """Store this browser's id in its cookie when the request did not carry it (a line of JavaScript)."""
    browser = browser_id()
    if st.context.cookies.get(launches.COOKIE) != browser:
        st.html(launches.cookie_script(browser), width="content", unsafe_allow_javascript=True)


def browser_runs() -> list[int]:
    """The runs launched from this browser into the store, newest first (app/launches.py)."""
    return launches.launched(store().path, browser_id())


def remember_launch(run_id: int) -> None:
    """Keep a launched run in this browser's list, and in the page address so a reload shows its settings again."""
    launches.record(store().path, browser_id(), run_id)
    st.session_state[LOADED] = run_id
    st.query_params[FROM_QUERY] = str(run_id)
