"""The first thing a browser sees: the title and a spinner, drawn before the engine (torch, transformers) is
imported. Only Streamlit is imported here, so the first page load after the server starts is never blank."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

TITLE = "PERP Lab"
STARTING = "Starting PERP Lab: loading the engine (a few seconds, once per server start)…"


@contextmanager
def splash(show: bool = True) -> Iterator[None]:
    """While the block runs, show the title and a spinner (when ``show``); remove them afterwards. The slot is
    taken on every run, shown or not, so the page's elements keep their places from one run to the next."""
    holder = st.empty()
    if not show:
        yield
        return
    with holder.container():
        st.title(TITLE)
        with st.spinner(STARTING, show_time=True):
            yield
    holder.empty()
