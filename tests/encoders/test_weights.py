"""Building a model only to load weights into it skips the random initialisation, and nothing
else: computed buffers are built, other threads initialise as before, and the digest of what
was loaded is unchanged."""

import threading

import torch

from rsretrieve.encoders.weights import built_for_loading, weights_digest


def test_random_initialisers_are_skipped_and_computed_buffers_kept() -> None:
    from rsretrieve.encoders.open_clip import _open_clip

    before = torch.get_rng_state()
    with built_for_loading():
        torch.nn.Conv2d(3, 8, 3)  # kaiming_uniform_ and uniform_ only
        torch.nn.Embedding(10, 4)  # normal_
    assert torch.equal(torch.get_rng_state(), before)  # no initialiser drew a number
    torch.nn.Conv2d(3, 8, 3)
    assert not torch.equal(torch.get_rng_state(), before)

    torch.manual_seed(0)
    reference = _open_clip().create_model("rsretrieve-tiny", pretrained=None)
    with built_for_loading():
        model = _open_clip().create_model("rsretrieve-tiny", pretrained=None)
    assert torch.equal(model.attn_mask, reference.attn_mask)  # the causal mask is computed, not drawn
    model.load_state_dict(reference.state_dict())
    assert weights_digest(model) == weights_digest(reference)
    tokens = torch.randint(0, 100, (2, 32))
    with torch.no_grad():
        assert torch.equal(model.eval().encode_text(tokens), reference.eval().encode_text(tokens))


def test_the_skip_holds_for_this_thread_only() -> None:
    built: dict[str, torch.Tensor] = {}

    def elsewhere() -> None:
        torch.manual_seed(3)
        built["weight"] = torch.nn.Linear(8, 8).weight.detach().clone()

    with built_for_loading():
        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
    torch.manual_seed(3)
    assert torch.equal(built["weight"], torch.nn.Linear(8, 8).weight)
