"""About: what PERP is, three pruning methods from 2024 (OWL, RIA, DSnoT), the adapters with their formulas, the two
layer-wise errors, and what each chart means."""

import streamlit as st

from app import texts
from perp_engine.config import ADAPTERS

st.title("About PERP Lab")
st.markdown(texts.PERP)

st.subheader("Three pruning methods from 2024")
st.caption("Each combines with PERP's repair recipes (on Experiment: method ria, allocation owl, refine dsnot); run "
           "labels name them, e.g. wanda + OWL + DSnoT 70%.")
for text in texts.METHODS_2024.values():
    st.markdown(text)

st.subheader("The adapters")
st.caption("Each wraps a pruned linear layer with weight W. Scaling and mask:")
st.latex(texts.SCALING)
for adapter in ADAPTERS:
    if adapter == "none":
        continue
    name, formula, explanation = texts.ADAPTERS[adapter]
    st.markdown(f"**{name}** (`{adapter}`)")
    st.latex(formula)
    st.caption(explanation)

st.subheader("Layer-wise errors")
st.markdown(texts.ERRORS)

st.subheader("Reading the charts")
for title, key in (("Perplexity vs sparsity (Compare)", "ppl_vs_sparsity"),
                   ("Perplexity vs trainable parameters (Compare)", "ppl_vs_trainable"),
                   ("Dense / pruned / retrained (Compare)", "ppl_bars"),
                   ("Accuracy vs sparsity (Compare)", "accuracy_vs_sparsity"),
                   ("Accuracy vs trainable parameters (Compare)", "accuracy_vs_trainable"),
                   ("Accuracy per task (Compare)", "accuracy_per_task"),
                   ("Learning curves (Compare, Run)", "learning_curves"),
                   ("Block learning curves (Compare)", "block_learning_curves"),
                   ("Each block's curve (Run)", "block_curves"),
                   ("Training loss (Compare)", "loss_curves"),
                   ("Error heatmaps (Layers)", "error_heatmaps"),
                   ("Error by depth (Layers)", "error_lines"),
                   ("Sparsity per block (Layers)", "block_sparsity"),
                   ("Sparsity (Layers)", "sparsity"),
                   ("Block outputs (Layers)", "block_losses")):
    st.markdown(f"**{title}.** {texts.CHARTS[key]}")

st.caption("Paper: M. Zimmer, M. Andoni, C. Spiegel, S. Pokutta, *PERP: Rethinking the Prune-Retrain Paradigm in "
           "the Era of LLMs*, arXiv:2312.15230.")
