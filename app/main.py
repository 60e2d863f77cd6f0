"""PERP Lab in the browser: ``streamlit run app/main.py`` from the repository root.

A PerpError (bad input, an unusable store) is shown as its one line. Any other error shows Streamlit's generic
message only (``client.showErrorDetails = "none"`` in .streamlit/config.toml); its traceback goes to the server's
log, never to the browser."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run app/main.py` puts app/ on the path, not the repository
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app import boot  # noqa: E402  (Streamlit only: it draws before the engine is imported)

st.set_page_config(page_title="PERP Lab", page_icon=":material/content_cut:", layout="wide")

with boot.splash(show="app.widgets" not in sys.modules):  # the engine's import takes seconds on the first load
    from app import widgets
    from perp_engine.errors import PerpError

pages = [
    st.Page(widgets.PAGES["experiment"], title="Experiment", icon=":material/science:", default=True),
    st.Page(widgets.PAGES["compare"], title="Compare", icon=":material/monitoring:"),
    st.Page(widgets.PAGES["layers"], title="Layers", icon=":material/view_module:"),
    st.Page(widgets.PAGES["inside_layer"], title="Inside a layer", icon=":material/grid_on:"),
    st.Page(widgets.PAGES["sweep"], title="Sweep", icon=":material/grid_view:"),
    st.Page(widgets.PAGES["paper"], title="Paper", icon=":material/article:"),
    st.Page(widgets.PAGES["run"], title="Run", icon=":material/description:", url_path="run"),
    st.Page(widgets.PAGES["about"], title="About", icon=":material/menu_book:"),
]
page = st.navigation(pages)
try:
    widgets.sidebar()
    page.run()
except PerpError as err:  # bad input or an unusable store (damaged, another program's): one line to act on
    st.error(str(err), icon=":material/error:")
