"""JointModel.forward with presence marks: towers embed only the rows holding their modality."""

import torch

from jointspace.objectives import ClipObjective
from tiny_steps import make_batch, tiny_model


def test_towers_embed_only_present_rows_and_absent_rows_are_zero():
    model = tiny_model(0.0, ClipObjective()).eval()
    batch = make_batch(model, n=10)
    present = {"text": torch.arange(10) % 3 != 0, "image": torch.ones(10, dtype=torch.bool)}
    seen = []
    hook = model.tower("text").register_forward_hook(lambda m, args, out: seen.append(len(out)))
    with torch.no_grad():
        full = model(batch.inputs)
        marked = model(batch.inputs, present=present)
    hook.remove()
    assert seen == [10, 6]  # the second pass ran the text tower on its 6 present rows alone
    rows = present["text"]
    torch.testing.assert_close(marked["text"][rows], full["text"][rows], rtol=0, atol=1e-6)
    assert (marked["text"][~rows] == 0).all()
    assert torch.equal(marked["image"], full["image"])  # every row present: the same call


def test_a_modality_hidden_in_every_row_still_runs_its_tower():
    model = tiny_model(0.0, ClipObjective())
    batch = make_batch(model, n=6)
    present = {"text": torch.zeros(6, dtype=torch.bool)}
    out = model(batch.inputs, present=present)
    assert out["text"].shape == (6, 8) and out["text"].requires_grad
