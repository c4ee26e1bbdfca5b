"""PR adapters: exact identity at init, parameter counts, ablation toggles, folding."""

import pytest
import torch

from SAMIHSLib.models import AdapterConfig, adapter_parameter_names, build_model
from SAMIHSLib.models.adapters import PRAdapter
from SAMIHSLib.models.image_encoder_vit import ImageEncoderViT


def _adapter_count(model) -> int:
    names = set(adapter_parameter_names(model))
    return sum(p.numel() for n, p in model.named_parameters() if n in names)


def test_vit_b_adapter_count_matches_the_paper_at_rank_100():
    model = build_model("vit_b", AdapterConfig(rank=100))
    # 2 shared 768x100 bases + 12 blocks x 2 positions x (100 rescale + 768 bias)
    assert _adapter_count(model) == 2 * 768 * 100 + 12 * 2 * (100 + 768) == 174_432


@pytest.mark.parametrize("positions, expected", [(("attn",), 1), (("mlp",), 1), (("attn", "mlp"), 2), ((), 0)])
def test_adapter_positions_toggle_per_position(positions, expected):
    model = build_model("tiny_vit", AdapterConfig(positions=positions, rank=32))
    per_position = 32 * (128 + 160 + 320) + 2 * (32 + 128) + 6 * (32 + 160) + 2 * (32 + 320)
    assert _adapter_count(model) == expected * per_position


def _passes_through(model, run):
    """(what ``run()`` returns, whether every PR adapter of ``model`` handed on its input bit for bit)."""
    adapters = [m for m in model.modules() if isinstance(m, PRAdapter)]
    passed = []
    hooks = [a.register_forward_hook(lambda _, inputs, output: passed.append(torch.equal(output, inputs[0])))
             for a in adapters]
    try:
        with torch.no_grad():
            result = run()
    finally:
        for hook in hooks:
            hook.remove()
    return result, len(passed) >= len(adapters) > 0 and all(passed)


# An adapter hands on a fresh tensor where the plain block passes its input (a transposed view in the
# TinyViT), so the next matmul may take another BLAS kernel: at init the encoders agree to rounding, not
# bit for bit, on some CPUs, while each adapter adds exactly zero.
def test_lite_adapters_start_as_identity(lite_model):
    adapted = build_model("tiny_vit", AdapterConfig(rank=32)).eval()
    missing = adapted.load_state_dict(lite_model.state_dict(), strict=False).missing_keys
    assert set(missing) == set(adapter_parameter_names(adapted))
    image = torch.rand(1, 3, 256, 256)
    encoded, exact = _passes_through(adapted, lambda: adapted.encode(image))
    assert exact
    with torch.no_grad():
        torch.testing.assert_close(encoded, lite_model.encode(image), rtol=1e-4, atol=1e-5)


def test_vit_adapters_start_as_identity_and_change_output_once_trained():
    torch.manual_seed(0)
    plain = ImageEncoderViT(img_size=256, depth=2, global_attn_indexes=(1,)).eval()
    adapted = ImageEncoderViT(img_size=256, depth=2, global_attn_indexes=(1,), adapters=AdapterConfig(rank=100)).eval()
    adapted.load_state_dict(plain.state_dict(), strict=False)
    image = torch.randn(1, 3, 256, 256)
    encoded, exact = _passes_through(adapted, lambda: adapted(image))
    assert exact
    with torch.no_grad():
        torch.testing.assert_close(encoded, plain(image), rtol=1e-4, atol=1e-5)
        adapted.blocks[0].attn_adapter.rescale.fill_(0.5)
        assert not torch.allclose(adapted(image), plain(image))


def test_folding_an_adapter_into_the_next_linear_is_exact():
    model = build_model("tiny_vit", AdapterConfig(rank=8)).eval()
    block = model.image_encoder.layers[1].blocks[0]
    with torch.no_grad():
        block.attn_adapter.rescale.normal_()
        block.attn_adapter.bias.normal_()
    x = torch.randn(4, 49, 128)
    with torch.no_grad():
        expected = block.attn.qkv(block.attn_adapter(x))
        block.attn_adapter.fold_into_linear(block.attn.qkv)
        assert torch.allclose(block.attn.qkv(x), expected, atol=1e-4)


def test_unknown_adapter_position_is_refused():
    with pytest.raises(ValueError, match="Unknown adapter position"):
        AdapterConfig(positions=("ffn",))
