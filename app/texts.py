"""The words of the app: what PERP is, the adapters, what each chart shows. Shared by the About page and the
captions under the charts, so a chart and its explanation never drift apart."""

from __future__ import annotations

PERP = """\
**Pruning** removes weights from a trained language model: *magnitude* drops the smallest weights, *Wanda*
weighs each weight by the size of the activations it sees, and *SparseGPT* prunes and adjusts the remaining
weights to undo the damage (an approximate second-order update). At 50% sparsity half of the weights of
every linear layer are exactly zero. The cost is a higher **perplexity** (the model is more surprised by text;
lower is better). Three methods from 2024, below, change which weights go (*RIA*), how many go in each block
(*OWL*), or rework the mask afterwards (*DSnoT*).

**Retraining** repairs the damage. The usual answer, retraining every weight, needs the memory of full
training. **PERP** (*Rethinking the Prune-Retrain Paradigm*, Zimmer et al., 2023) shows that retraining a tiny,
well-chosen share of the parameters recovers most of the loss: the **biases** and **normalisation layers**
(well under 1% of the model), a small adapter on the output **head**, and optionally low-rank adapters on the
pruned layers that **keep the zeros zero** when they are merged back, so the model stays sparse.

**Layer-wise reconstruction** is the cheaper variant: each transformer block is retrained on its own to
reproduce the dense block's outputs, one block at a time.
"""

# Three methods of 2024 that combine with PERP's repair (Experiment: method ria, allocation owl, refine dsnot).
METHODS_2024: dict[str, str] = {
    "OWL": "**OWL** (*Outlier Weighed Layerwise sparsity*; L. Yin et al., ICML 2024, arXiv:2310.05175) decides "
           "*how much* each transformer block is pruned, not *which* weights: it is an allocation that any method "
           "then applies. Some blocks hold far more outlier weights (a Wanda score above M times the block's mean, "
           "M = 5) than others, and those are the weights a model cannot lose. OWL prunes such blocks less and the "
           "others more, within the target ± λ (0.08), so the average stays exactly the target sparsity. It costs "
           "one more pass over the dense blocks on the calibration text before pruning starts. It needs unstructured "
           "sparsity: an N:M pattern fixes every block at N/M.",
    "RIA": "**RIA** (*Relative Importance and Activations*, from *Plug-and-Play: An Efficient Post-training Pruning "
           "Method for Large Language Models*; Y. Zhang, H. Bai, H. Lin, J. Zhao, L. Hou, C. V. Cannistraci, ICLR "
           "2024, OpenReview) is a pruning method like Wanda, with a fairer score: a weight counts by how large it "
           "is compared with the other weights of its row *and* of its column (|W_ij| / row sum + |W_ij| / column "
           "sum), times the size of its input to the power 0.5. So a row or column of small weights still keeps "
           "its strongest ones. It costs what Wanda costs. For 2:4 or 4:8 patterns it can first regroup the inputs "
           "(channel permutation) so that every group of M keeps more important weights: reallocation sorts the "
           "inputs once per layer, lsa then adds M rounds of linear sum assignment per layer.",
    "DSnoT": "**DSnoT** (*Dynamic Sparse No Training: Training-Free Fine-tuning for Sparse LLMs*; Y. Zhang et al., "
             "ICLR 2024, arXiv:2310.08915) improves a mask another method chose, without any training. For each "
             "output row it measures how far the row's mean output on the calibration text has moved from the dense "
             "one, then repeatedly brings back one pruned weight that moves it home and prunes one kept weight that "
             "matters little, so the row keeps its number of zeros. It costs up to 50 such swap cycles per row, "
             "all rows at once, with no gradients and no backpropagation; by default, as in the official code, it "
             "refines only the attention layers.",
}

SCALING = r"s = \alpha / r \quad\text{(rank } r\text{, scaling } \alpha\text{)},\qquad M = \mathbb{1}[W \neq 0]"

# Keyed by the adapter names of perp_engine.config.ADAPTERS: (title, formula, explanation).
ADAPTERS: dict[str, tuple[str, str, str]] = {
    "lora": ("LoRA", r"W' = W + s\,BA",
             "The classic low-rank adapter. BA is dense: merging it would fill the pruned zeros back in, so it is "
             "kept as a separate module, and the run's notes say so."),
    "loraprune": ("LoRAPrune", r"\text{train: } W + s\,BA \qquad \text{merge: } W' = W + s\,(BA) \odot M",
                  "Trained like LoRA, masked only when merged: sparsity is kept, but the merged model differs from "
                  "the trained one wherever BA was non-zero on a pruned weight."),
    "masklora": ("MaskLoRA", r"W' = W + s\,(BA) \odot M,\qquad A \sim \text{Kaiming},\; B = 0",
                 "The mask is applied during training too, so what is trained is exactly what is merged, and the "
                 "pruned weights stay zero. B = 0 makes it start as the identity (W' = W)."),
    "scalelora": ("ScaleLoRA", r"W' = W \odot (1 + BA),\qquad A \text{ random},\; B = 0",
                  "A multiplicative rescaling of each weight: zeros stay zero by construction, and B = 0 makes it "
                  "start as the identity. A random A lets BA reach any rank up to r."),
    "scalelora-paper": ("ScaleLoRA (paper)", r"W' = W \odot (BA),\qquad A = B = \tfrac{1}{\sqrt{r}}\,\mathbf{1}",
                        "The PERP paper's form, kept to reproduce it: A and B start constant, so BA = 1 (identity). "
                        "That symmetric start gives every row of A and every column of B identical gradients "
                        "forever, so BA stays rank 1 whatever r is; the full-rank ScaleLoRA above avoids this."),
}

ERRORS = """\
Two layer-wise errors, both relative to the dense model and measured on held-out windows of the calibration
text (not used to prune or to retrain):

- **Local error** of a layer: ||W X - W' X||² / ||W X||², with X the inputs this layer sees in the model being
  measured and W, W' its dense and current weights. It is what pruning and reconstruction minimise, and 0 for a
  layer whose weights equal the dense ones.
- **Accumulated error (drift)**: ||f_dense(X_dense) - f(X)||² / ||f_dense(X_dense)||², each model on its own
  activations propagated from the start: how far the model's internal state has moved from the dense one, all
  upstream damage included. It often grows with depth, even where a layer's own error is small, but need not: a
  later block can undo part of the damage. Under its charts, Layers says for each run where it rises, stays
  level or drops.
"""

CHARTS: dict[str, str] = {
    "ppl_vs_sparsity": "Perplexity as sparsity grows, one line per pruning method and retraining recipe. Dotted "
                       "lines are the pruned models before retraining; the dashed line, labelled with its value, is "
                       "the dense model. The gap between a dotted line and a solid one is what retraining recovered "
                       "(the runs table gives it as a share of the log-perplexity gap, and of the linear one). Runs "
                       "evaluated under different protocols (text, sequence length, tokens) get their own lines and "
                       "dense line.",
    "ppl_vs_trainable": "The PERP picture. Each point is a retrained run, labelled by its recipe: the share of the "
                        "model's own parameters it trained (x, in %, log scale; adapter weights count as trained) "
                        "against its perplexity. Dotted: the same pruned model before retraining; dashed, labelled: "
                        "the dense model. Points near the dashed line at the far left mean that a tiny share of "
                        "parameters recovered most of the damage.",
    "ppl_bars": "For each run: the dense model, the model after pruning, and after retraining, with their values.",
    "accuracy_vs_sparsity": "Zero-shot accuracy (lm-eval, offline task data) as sparsity grows: a task's headline "
                            "metric or the mean over each run's tasks, with standard errors as error bars. Dotted: "
                            "the pruned models; solid: after retraining; dashed, labelled: the dense model; grey "
                            "dotted: guessing. Runs scored under different protocols (tasks, docs per task, seed, data) get "
                            "their own lines and are never averaged together.",
    "accuracy_vs_trainable": "The PERP picture in accuracy: each retrained run's zero-shot accuracy against the "
                             "share of the model's own parameters it trained. Dotted in its colour: the same pruned model before "
                             "retraining; dashed: the dense model; grey dotted: guessing. Error bars: standard errors.",
    "accuracy_per_task": "Each task's accuracy, and the mean over the run's tasks, for the model each run ends with "
                         "(after retraining, or pruned when it did not retrain), beside the dense model; grey ticks: "
                         "guessing. With a limit of docs per task an error bar of several points is usual: "
                         "differences inside it are noise.",
    "learning_curves": "Held-out perplexity measured every few optimizer steps while the model retrains, on the "
                       "evaluation windows no step trains on; the last point is the run's final perplexity. Against "
                       "seconds, the time the measurements took is left out. A curve still falling at its end has "
                       "not converged: a longer run would end lower.",
    "block_learning_curves": "Reconstruction trains block after block; each block's held-out error (on the "
                             "measurement windows) is taken every few steps of its training. Drawn relative to the "
                             "block's error before it trained, averaged over the blocks: 1 is no better than pruned.",
    "block_curves": "Each block's held-out error against the dense block while that block trains (darker: deeper "
                    "blocks). A line that ends flat is a block that more training would no longer improve.",
    "loss_curves": "Training loss per step (retraining: language-model loss; reconstruction: the block "
                   "errors, block after block). A curve that drops then flattens has converged; one that "
                   "rises usually means the learning rate is too high.",
    "error_heatmaps": "The chosen layer-wise error of every linear layer, by block (rows) and layer type "
                      "(columns). Colour is log10: one step is a factor of ten. The change view colours "
                      "after repair ÷ after pruning: blue where repair lowered the error, red where it raised it.",
    "error_lines": "The same errors along the depth of the model, one panel per layer type and one line per run "
                   "and state (the legend names them): after pruning, after repair, or in the change view their "
                   "ratio, the dashed line at 1 meaning unchanged. The local error shows which layers pruning hurt "
                   "most; the accumulated error is the drift that reaches each layer, all upstream damage "
                   "included. The sentences below say where each run's block errors rise, stay level or drop.",
    "block_sparsity": "Each block's sparsity: dotted, the target the allocation gave it; solid, the share of its "
                      "weights actually zero (its linears weighted by size). Uniform allocation gives every block "
                      "the run's sparsity. OWL gives each block its own: the light bars (right axis) are the share "
                      "of the dense block's weights that are outliers (Wanda score above M times the block's mean); "
                      "blocks with more outliers are pruned less, and the block sparsities average exactly the "
                      "run's target.",
    "sparsity": "Share of zero weights in each linear layer. Uniform allocation gives the same value everywhere "
                "(OWL: about the same within a block); N:M patterns give exactly N/M.",
    "block_losses": "The output of each whole transformer block against the dense block's, as a relative "
                    "squared error: local (the block on the inputs it sees in the measured model, against the "
                    "dense block on the same inputs) or accumulated (each model on its own propagated inputs), "
                    "after pruning and after repair (the legend names each line; the change view draws their "
                    "ratio). Block-by-block reconstruction trains exactly the local block error.",
}

GETTING_STARTED = """\
**No runs yet.** Open **Experiment**, keep the defaults (the embedded SmolLM2-135M model, Wanda pruning to 50%,
the PERP + MaskLoRA recipe, quick size) and press **Launch**. The first run converts the embedded model once
(about half a minute), then every stage shows its progress. When it is done, come back here to compare.
"""

INSIDE_LAYER: dict[str, str] = {
    "intro": "One linear layer of the model, seen up close: which weights magnitude, Wanda, SparseGPT, RIA and Wanda "
             "refined by DSnoT remove, what that costs the layer's output, and what adapters do to the zeros. The "
             "layer is pruned alone, on the inputs it sees in the dense model; nothing is saved and no run is started.",
    "scores": "Left: the size of each weight. Middle: Wanda's score, the weight's size times how large its input "
              "column is on calibration text. Look for columns that light up in the middle but not on the left: "
              "a small weight on a large input matters, so Wanda keeps it where magnitude would drop it. Right: "
              "RIA's score, the weight's size relative to the other weights of its row and of its column, times "
              "the input's size to the power 0.5: a weight that is large for its row or column counts, even in a "
              "row or column of small weights.",
    "masks": "Blue weights are kept, orange ones are set to zero. Magnitude and RIA use one threshold for the whole "
             "matrix, so some rows lose more than others; Wanda removes the same number in every row; SparseGPT "
             "picks weights it can compensate for (see below). Wanda + DSnoT starts from Wanda's mask and swaps, row "
             "by row, a pruned weight for a kept one while that brings the row's mean output on the calibration text "
             "closer to the dense one: each row keeps its count. With 2:4 or 4:8, every group of 4 or 8 neighbours "
             "in a row loses exactly 2 or 4.",
    "dsnot": "A run with refine dsnot refines only the attention linears by default, as the official code does; "
             "here DSnoT refines whichever linear you pick, so that you can see what it does to it.",
    "overlap": "How much the methods agree. Left: the Jaccard overlap of the kept weights (1 = the same weights). "
               "Right: the share of the layer's weights all five keep, all five prune, or only some keep. The "
               "grey bars are the weights the methods disagree about: that is where they differ.",
    "local_error": "How much each pruned layer's output moves on text it was not calibrated on: "
                   "‖WX − W′X‖² / ‖WX‖², with X the inputs this layer sees in the dense model (the local error; "
                   "0 means the output is unchanged). Lower is better. DSnoT aims at each row's mean output, not at "
                   "every token's: its local error can rise while the mean output gets closer.",
    "error_curves": "The same local error as this layer alone is pruned from 0% to 90% (unstructured). A lower "
                    "line loses less of the output at the same sparsity; where the lines part is where the choice "
                    "of method starts to matter. The stars are the current setting.",
    "sparsegpt_update": "SparseGPT does not only remove weights: it also changes the ones it keeps, to make up "
                        "for what was removed (red and blue: moved down or up). Blank cells are the weights it "
                        "pruned. The moves grow from left to right: SparseGPT walks through the input columns in "
                        "that order and shifts the columns it has not reached yet to absorb each removed weight.",
    "adapters": "A few training steps of two adapters on this pruned layer, towards the dense layer's outputs. "
                "Plain LoRA adds a dense low-rank product B·A: merging it back fills every zero (blue everywhere) "
                "and the layer is no longer sparse. MaskLoRA multiplies B·A by the mask, so its merge keeps every "
                "zero (the pattern is unchanged).",
}
