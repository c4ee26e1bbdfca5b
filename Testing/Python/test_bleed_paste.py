"""Bleed pasting and per-fold training data: a pasted bleed lands inside the brain where its
subtype occurs, keeps the recipient's own bleed, and in fold training no slice of another fold
(as recipient or donor) can reach a fold's training images."""

import numpy as np
from scipy import ndimage as ndi

from SAMIHSLib.phantom import BleedSpec, make_head_phantom
from training.bleed_paste import brain_region, paste_bleed, placement_candidates
from training.fold_training import same_fold_donors
from training.batches import BatchMaker, TrainingSlice
from training.training_config import TrainingConfig


def _slices(count=4):
    out = []
    for index in range(count):
        phantom = make_head_phantom(shape=(1, 192, 192), spacing_zyx=(5.0, 1.0, 1.0), seed=index,
                                    bleeds=(BleedSpec("intraparenchymal", (20.0 - 10 * index, 10.0, 0.0),
                                                      (9.0, 7.0, 6.0), 70.0),))
        out.append(TrainingSlice(phantom.volume_hu[0].astype(np.float32), phantom.bleed_labels[0] > 0,
                                 f"scan{index}", 1.0))
    return out


def test_a_pasted_bleed_lands_where_its_subtype_occurs_and_keeps_the_recipients_bleed():
    recipient, donor = _slices(2)
    rng = np.random.default_rng(0)
    brain = brain_region(recipient.image_hu)
    depth_mm = ndi.distance_transform_edt(brain)
    for subtype in ("IPH", "SDH"):
        pasted = None
        for _ in range(20):
            pasted = paste_bleed(recipient.image_hu, recipient.mask, donor.image_hu, donor.mask, subtype, rng)
            if pasted is not None:
                break
        assert pasted is not None
        image, mask = pasted
        added = mask & ~recipient.mask
        assert added.sum() >= 10 and (mask & recipient.mask).sum() == recipient.mask.sum()
        assert brain[added].all()  # never across the skull
        centre_depth = depth_mm[tuple(int(round(c)) for c in ndi.center_of_mass(added))]
        assert centre_depth >= 6.0 if subtype == "IPH" else centre_depth <= 12.0
        assert 30.0 < float(np.median(image[added])) < 90.0  # blood densities, lowered at most to ~38 HU
    assert not placement_candidates(np.full((64, 64), -1000.0, np.float32), "IPH", 1.0).any()  # no brain: no place


def test_fold_training_pastes_only_bleeds_of_the_same_fold():
    slices = _slices(4)
    folds = [["scan0", "scan1"], ["scan2", "scan3"]]
    donors = same_fold_donors(slices, folds)
    assert {d.patient for d in donors(slices[0])} == {"scan0", "scan1"}
    assert {d.patient for d in donors(slices[3])} == {"scan2", "scan3"}

    class NoModel:  # image_and_target needs only the model's preprocessing and input size
        class config:
            from SAMIHSLib.imaging.preprocessing import BRAIN_WINDOW as preprocessing
            image_size = 256

    seen = []

    def recording_pool(sample):
        pool = donors(sample)
        seen.append((sample.patient, {d.patient for d in pool}))
        return pool

    config = TrainingConfig(paste_probability=1.0, max_pasted_bleeds=2, augment=False)
    maker = BatchMaker(NoModel, config, np.random.default_rng(1), donors=recording_pool)
    for sample in slices:
        prepared = maker.image_and_target(sample)
        assert prepared.mask.sum() >= sample.mask.sum()
    fold_of = {scan: index for index, fold in enumerate(folds) for scan in fold}
    assert seen and all({fold_of[p] for p in pool} == {fold_of[recipient]} for recipient, pool in seen)
