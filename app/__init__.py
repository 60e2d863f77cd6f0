"""The PERP Lab Streamlit app: ``streamlit run app/main.py``.

The modules that build figures, configs and tables (figures, forms, runs, progress_view, texts) never import
Streamlit, so they are tested as plain functions; ``state`` and ``widgets`` hold the Streamlit side, and the
pages in ``pages/`` only lay those pieces out.
"""
