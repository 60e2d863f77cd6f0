"""A causal LM as the engine sees it, for any decoder-only family: loading, its blocks and linears, their inputs.

- ``load``: the embedded GGUF model, a local folder or a Hub id, with its tokenizer
- ``blocks``: the decoder blocks and their linear layers (Linear and GPT-2's Conv1D), found without hard-coded names
- ``capture``: block 0's inputs with every decoder-layer keyword argument, and one block's forward
- ``lm_loss``: the causal-LM loss over chunks of positions (perplexity and retraining)
- ``parameters``: parameter counts, a shared tensor counted once
- ``sparsity``: the zeros of a pruned weight (M = 1[W != 0]) and the check that a change kept them
- ``shape``: the sizes the cost and memory models read from a model
"""
