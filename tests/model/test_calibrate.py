import torch
from tiny_models import random_tokens

from perp_engine.model.blocks import find_decoder_blocks
from perp_engine.model.capture import capture_block_inputs, run_block


def test_blocks_fed_captured_inputs_reproduce_the_model(tiny_model):
    """Block i run on captured inputs gives the model's own hidden state i+1, for every family and chunking."""
    samples = random_tokens(5, 16)
    with torch.no_grad():
        hidden = tiny_model(input_ids=samples, output_hidden_states=True).hidden_states
    _, blocks = find_decoder_blocks(tiny_model)
    inputs = capture_block_inputs(tiny_model, samples, batch_size=2)
    assert len(inputs) == 3 and [h.shape[0] for h in inputs.hidden] == [2, 2, 1]
    torch.testing.assert_close(torch.cat(inputs.hidden), hidden[0])
    for i, block in enumerate(blocks[:-1]):
        inputs = inputs.with_hidden(run_block(block, inputs))
        torch.testing.assert_close(torch.cat(inputs.hidden), hidden[i + 1], atol=1e-5, rtol=1e-4)
