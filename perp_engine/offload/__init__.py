"""Where the decoder blocks live between uses: the run's device, CPU memory or files on disk, one block at a time.

- ``placement``: BlockPlacement and ``each_block``, the one loop that brings a block in, uses it and puts it back
- ``block_files``: one block's tensors in a safetensors file
- ``dense_reference``: the dense blocks kept while the model is pruned and repaired (the layer errors' reference)
"""
