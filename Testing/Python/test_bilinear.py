"""The app resizes images, mask prompts and logits without torch (``SAMIHSLib/imaging/bilinear.py``),
value for value as PyTorch's CPU kernels do, so masks do not depend on which of the two ran."""

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import REPO
from SAMIHSLib.imaging.bilinear import resize_bilinear
from SAMIHSLib.imaging.transforms import SliceToModelTransform

# (input, output) sizes the app resizes between: a 512 slice to LiteMedSAM's 256 and its logits back,
# SAM ViT-B's 1024 grid, slices that are not 512 wide (a 630-pixel JPG slice, a non-square crop)
SHAPES = [((512, 512), (256, 256)), ((256, 256), (512, 512)), ((256, 256), (1024, 1024)),
          ((1024, 1024), (512, 512)), ((630, 630), (256, 256)), ((256, 256), (630, 630)),
          ((256, 200), (512, 410)), ((300, 512), (150, 256)), ((256, 256), (256, 256))]
# PyTorch's vectorised kernels (AVX2, AVX-512) fuse multiply-adds, which the numpy form reproduces
# exactly; its generic kernel (a CPU without AVX2) rounds each step, a few ulp away.
VECTORISED = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


@pytest.mark.parametrize("size_in, size_out", SHAPES)
def test_resize_equals_torch_bilinear(size_in, size_out):
    values = (np.random.default_rng(sum(size_in + size_out)).standard_normal((1, 3) + size_in) * 10).astype(np.float32)
    expected = F.interpolate(torch.from_numpy(values), size=size_out, mode="bilinear", align_corners=False).numpy()
    resized = resize_bilinear(values, size_out)
    assert resized.dtype == np.float32 and resized.shape == expected.shape
    if VECTORISED:
        assert np.array_equal(resized, expected)
    else:
        assert np.allclose(resized, expected, rtol=0, atol=1e-4)


@pytest.mark.real_data
def test_logits_become_the_masks_torch_gave(real_slices):
    """Decoder-like logits of real bleeds (a signed distance, so many pixels sit near 0) upsampled to
    the slice: the mask (logits > 0) is the one torch's resize gives."""
    from scipy import ndimage as ndi

    for _, image, truth in real_slices[:6]:
        transform = SliceToModelTransform(image.shape, 256)
        lowres = transform.mask_to_model_lowres(truth.astype(np.float32), 256)[0, 0] > 0.5
        logits = (ndi.distance_transform_edt(lowres) - ndi.distance_transform_edt(~lowres)).astype(np.float32) / 7
        mine = transform.lowres_logits_to_original(logits[None, None])[0, 0] > 0
        h, w = transform.resized_hw
        theirs = F.interpolate(torch.from_numpy(logits[None, None, :h, :w]), size=image.shape, mode="bilinear",
                               align_corners=False)[0, 0].numpy() > 0
        assert np.array_equal(mine, theirs) and mine.any()


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="at least 1"):
        resize_bilinear(np.zeros((4, 4), np.float32), (0, 3))


def test_the_coordinate_leaf_does_not_import_torch():
    code = ("import sys; import SAMIHSLib.imaging.transforms, SAMIHSLib.imaging.preprocessing; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0
