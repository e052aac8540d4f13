"""A peer's checkpoint loads: the checkpoint schema's family check (hostile round 4: a forged
family is refused) knows the peer families, whose models are saved and read like any other."""
import pytest
import torch

import tests.tiny  # noqa: F401  (registers the tiny families, peers included)
from lico_bench.models import create_model, load_checkpoint, save_checkpoint


@pytest.mark.parametrize("family", ["guided", "rrr", "sgt"])
def test_a_peer_checkpoint_round_trips(tmp_path, family):
    m = create_model(f"{family}_tiny", 10).eval()
    path = save_checkpoint(tmp_path / "model.pt", m)
    back = load_checkpoint(path).eval()
    assert back.cfg.family == family
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():   # the same weights and the same operations: bitwise equal
        assert torch.equal(back(x), m(x))
