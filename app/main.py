"""PERP Lab in the browser: ``streamlit run app/main.py`` from the repository root."""

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

pages = [
    st.Page(widgets.PAGES["experiment"], title="Experiment", icon=":material/science:", default=True),
    st.Page(widgets.PAGES["compare"], title="Compare", icon=":material/monitoring:"),
    st.Page(widgets.PAGES["layers"], title="Layers", icon=":material/view_module:"),
    st.Page(widgets.PAGES["sweep"], title="Sweep", icon=":material/grid_view:"),
    st.Page(widgets.PAGES["run"], title="Run", icon=":material/description:", url_path="run"),
    st.Page(widgets.PAGES["about"], title="About", icon=":material/menu_book:"),
]
page = st.navigation(pages)
widgets.sidebar()
page.run()
