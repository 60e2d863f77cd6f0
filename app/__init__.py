"""The PERP Lab Streamlit app: ``streamlit run app/main.py``.

The modules that build figures, axes, configs and tables (figures, layer_figures, axes, forms, runs,
run_details, progress_view, texts) never import Streamlit, so they are tested as plain functions; ``state`` and
``widgets`` hold the Streamlit side, ``boot`` draws the first screen before the engine is imported, and the pages
in ``pages/`` only lay those pieces out.
"""
