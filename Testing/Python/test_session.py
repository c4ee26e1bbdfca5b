"""Corrections, locked (hand-edited) slices and exact undo/redo on a session."""

import numpy as np
import pytest

from SAMIHSLib.interaction.predictor import SAMIHSPredictor
from SAMIHSLib.interaction.session import UNDO_DEPTH, HemorrhageSession, object_through
from SAMIHSLib.interaction.regions import occupied_extent, slice_with_most

from SAMIHSLib.interaction.regions import deepest_point


@pytest.fixture
def session(fresh_predictor, small_phantom):
    fresh_predictor.set_volume(small_phantom.volume_hu, small_phantom.spacing_zyx)
    return HemorrhageSession(fresh_predictor)


def _first_click(session, phantom, bleed=0):
    truth = phantom.bleed_mask(bleed)
    k = slice_with_most(truth)
    session.click(k, [deepest_point(truth[k])])
    return k


def test_negative_click_changes_only_its_slice_and_undo_restores_exactly(session, small_phantom):
    k = _first_click(session, small_phantom)
    before = session.mask.copy()
    assert before[k].any() and before.sum() > before[k].sum()  # propagated
    rows, cols = np.nonzero(before[k])
    session.click(k, [], [(float(cols[0]), float(rows[0]))], propagate=False)
    changed = np.nonzero((session.mask != before).any(axis=(1, 2)))[0]
    assert list(changed) == [k] and session.mask[k].sum() < before[k].sum()
    session.undo()
    assert np.array_equal(session.mask, before)
    session.redo()
    assert list(np.nonzero((session.mask != before).any(axis=(1, 2)))[0]) == [k]


def test_a_correction_on_a_propagated_slice_changes_only_the_slices_beyond_it(session, small_phantom):
    """A negative click on a slice that propagation filled re-propagates away from the clicked
    slice only (the slices between were answered from the user's own click) and is one undo step."""
    k = _first_click(session, small_phantom)
    before = session.mask.copy()
    above = k + 1
    assert before[above].any() and before[above + 1].any()
    rows, cols = np.nonzero(before[above])
    edge = int(np.argmax(cols))  # the rightmost pixel: a cut at the edge of the propagated mask
    steps = session.history_lengths[0]
    outcome = session.click(above, [], [(float(cols[edge]), float(rows[edge]))])
    changed = np.nonzero((session.mask != before).any(axis=(1, 2)))[0]
    assert above in changed and all(c >= above for c in changed), changed
    # The cut takes the edge, not the slice: the part that continues the bleed stays.
    assert 0.5 * before[above].sum() < session.mask[above].sum() < before[above].sum()
    assert "down" not in outcome.stop_reasons  # nothing went back towards the clicked slice
    assert session.history_lengths[0] == steps + 1
    session.undo()
    assert np.array_equal(session.mask, before)


def test_a_negative_click_on_the_core_of_a_propagated_slice_takes_the_part_around_it(session, small_phantom):
    """On a slice propagation filled, the part that continues the bleed from its neighbours stands
    in for a positive click; a negative click on that very part (its deepest point) is the user's
    "not this" and must not come out as nothing: the part around the click goes, the rest stays."""
    k = _first_click(session, small_phantom)
    before = session.mask.copy()
    above = k + 1
    core = before[above] & (before[above - 1] | before[above + 1])
    assert core.any()
    session.click(above, [], [deepest_point(core)], propagate=False)
    assert session.mask[above].sum() < before[above].sum()  # it took something away
    assert not (session.mask[above] & ~before[above]).any()  # and added nothing
    changed = np.nonzero((session.mask != before).any(axis=(1, 2)))[0]
    assert list(changed) == [above]


def test_a_click_on_a_missed_slice_fills_it_and_stops_at_the_slices_already_there(session, small_phantom):
    """A positive click beyond where propagation stopped answers that slice and spreads only until
    a slice comes out as it was; a slice the user clicked is never re-derived."""
    truth = small_phantom.bleed_mask(0)
    k = _first_click(session, small_phantom)
    last = int(np.nonzero(session.mask.any(axis=(1, 2)))[0].max())
    session.set_slice_mask(last, np.zeros_like(session.mask[last]), lock=False)  # as if propagation stopped short
    before = session.mask.copy()
    session.click(last, [deepest_point(truth[last])])
    assert session.mask[last].any()
    assert np.array_equal(session.mask[k], before[k])  # the user's first slice is kept as it was
    assert (session.mask[last] & truth[last]).sum() > 0.6 * truth[last].sum()


def test_a_corrective_click_at_the_edge_moves_the_edge_and_a_far_one_reaches_its_miss(session):
    """The reach of a corrective positive click: near the object's edge a few mm (no blob of brain
    as large as the bleed), farther out in proportion to the gap it bridges."""
    from SAMIHSLib.interaction.regions import disc_around, mm_to_px
    from SAMIHSLib.interaction.session import CORRECTION_REACH_GAPS, CORRECTION_REACH_MM

    shape = session.predictor.slice_shape
    centre = (shape[1] / 2.0, shape[0] / 2.0)
    target = disc_around(shape, centre, 40.0)  # a large bleed (about 5 cm^2 at 0.45 mm pixels)
    answer = disc_around(shape, centre, 90.0) & ~target  # what the model offered around it
    floor_px = mm_to_px(CORRECTION_REACH_MM, session.predictor.spacing_zyx)
    at_edge = (centre[0] + 41.0, centre[1])
    added = session._local_addition(answer, target, [at_edge])
    assert 0 < added.sum() <= np.pi * (floor_px + 1) ** 2  # the edge moves out, no 40 px blob
    far = (centre[0] + 70.0, centre[1])  # a miss 30 px beyond the edge
    added_far = session._local_addition(answer, target, [far])
    assert added_far[int(centre[1]), int(centre[0] + 41)]  # it bridges the gap back to the object
    assert added_far.sum() <= np.pi * (CORRECTION_REACH_GAPS * 31) ** 2


def test_a_negative_click_on_a_rim_shaves_the_rim_and_one_deep_in_a_leak_cuts_the_leak():
    """A negative click reaches a few mm, or three times its depth inside the mask: on the edge of a
    good mask it no longer takes a wedge of the bleed (a quarter of it with the plain nearest-click
    cut), and deep inside a leak it still cuts the whole leak off."""
    from SAMIHSLib.interaction.regions import NEGATIVE_REACH_MM, disc_around, remove_nearest_to_negatives

    shape, floor_px = (200, 200), NEGATIVE_REACH_MM / 0.45
    bleed = disc_around(shape, (100.0, 100.0), 40.0)
    rim_click, positive = (139.0, 100.0), [(100.0, 100.0)]
    unlimited = remove_nearest_to_negatives(bleed, positive, [rim_click])
    shaved = remove_nearest_to_negatives(bleed, positive, [rim_click], floor_px)
    assert (bleed & ~unlimited).sum() > 0.15 * bleed.sum()  # the old cut: a wedge of the bleed
    assert 0 < (bleed & ~shaved).sum() <= np.pi * (3 * 1.0 + floor_px + 1) ** 2
    leak = disc_around(shape, (165.0, 100.0), 25.0)  # a blob the model leaked into, joined to the bleed
    cut = remove_nearest_to_negatives(bleed | leak, positive, [(168.0, 100.0)], floor_px)
    assert (cut & leak & ~bleed).sum() <= 0.05 * (leak & ~bleed).sum()  # the leak goes
    assert (cut & bleed).sum() > 0.85 * bleed.sum()  # the bleed stays


def test_positive_click_on_second_bleed_adds_without_touching_the_first(session, small_phantom):
    _first_click(session, small_phantom, 0)
    first = session.mask.copy()
    _first_click(session, small_phantom, 1)
    assert np.array_equal(session.mask & first, first)  # nothing of the first bleed was lost
    assert (session.mask & small_phantom.bleed_mask(1)).sum() > 0.6 * small_phantom.bleed_mask(1).sum()


def test_hand_edited_slices_survive_repropagation(session, small_phantom):
    k = _first_click(session, small_phantom)
    neighbour = k + 1
    hand = np.zeros(session.mask.shape[1:], bool)
    hand[10:20, 10:20] = True  # an edit no model would produce
    session.set_slice_mask(neighbour, hand)
    assert neighbour in session.locked_slices
    session.repropagate(k)
    assert np.array_equal(session.mask[neighbour], hand)
    with pytest.raises(ValueError, match="locked"):
        session.click(neighbour, [(15.0, 15.0)])
    session.undo()  # the re-propagation
    session.undo()  # the hand edit
    assert neighbour not in session.locked_slices and not np.array_equal(session.mask[neighbour], hand)


def test_undo_steps_are_small_diffs_and_deep(session):
    shape = session.mask.shape
    for step in range(UNDO_DEPTH + 5):
        edit = np.zeros(shape[1:], bool)
        edit[step % shape[1], :3] = True
        session.set_slice_mask(step % shape[0], edit, lock=False)
    assert len(session._undo) == UNDO_DEPTH >= 20
    assert all(diff.before.nbytes <= 3 * shape[1] for diff in session._undo)  # a box, not a volume
    for _ in range(UNDO_DEPTH):
        session.undo()
    with pytest.raises(IndexError):
        session.undo()


@pytest.mark.slow  # ~30-45 s on 2 cores: in `pytest -m slow` (CI runs it)
def test_repropagation_stops_once_the_result_stops_changing(session, small_phantom):
    k = _first_click(session, small_phantom)
    before = session.mask.copy()
    steps = len(session._undo)
    outcome = session.repropagate(k)
    assert all("unchanged" in reason for reason in outcome.stop_reasons.values()), outcome.stop_reasons
    assert np.array_equal(session.mask, before) and len(session._undo) == steps  # nothing changed, no undo step
    full = session.repropagate(k, until_unchanged=False)
    assert not any("unchanged" in reason for reason in full.stop_reasons.values())


def test_click_outside_the_slice_is_refused_and_changes_nothing(session):
    from SAMIHSLib.io.validation import InputError

    with pytest.raises(InputError, match="outside the image"):
        session.click(3, [(-5.0, 10.0)])
    assert not session.mask.any() and not session.can_undo


def test_negative_slice_indices_are_refused_everywhere_and_change_nothing(session):
    from SAMIHSLib.io.validation import InputError

    edit = np.ones(session.mask.shape[1:], bool)
    for call in (lambda: session.set_slice_mask(-3, edit), lambda: session.set_locked(-1, True),
                 lambda: session.click(-2, [(10.0, 10.0)]), lambda: session.repropagate(-1),
                 lambda: session.set_slice_mask(session.mask.shape[0], edit)):
        with pytest.raises(InputError, match="outside the volume"):
            call()
    assert not session.mask.any() and not session.locked_slices and not session.can_undo


def test_undo_restores_the_click_history_with_the_mask(session, small_phantom):
    k = _first_click(session, small_phantom)
    history_after_first = dict(session.slice_clicks)
    rows, cols = np.nonzero(session.mask[k])
    extra = (float(cols[-1]), float(rows[-1]))
    session.click(k, [extra], propagate=False)
    assert len(session.slice_clicks[k][0]) == 2
    session.undo()
    assert session.slice_clicks == history_after_first  # the undone click no longer protects its pixels
    session.redo()
    assert len(session.slice_clicks[k][0]) == 2
    session.undo()
    session.undo()
    assert session.slice_clicks == {} and not session.mask.any()


def test_random_edit_sequences_keep_undo_exact_and_hand_edits_intact(lite_model, small_phantom):
    """Seeded random sequences of clicks (positive, negative), hand edits, bad indices, undo and
    redo on a real model: every undo returns the exact earlier state (mask, locks, clicks), and
    no click or propagation ever changes a locked slice."""
    predictor = SAMIHSPredictor(lite_model)
    ks = range(5, 9)  # a few slices through the first bleed keep the real model's encoder time small
    predictor.set_volume(small_phantom.volume_hu[5:9], small_phantom.spacing_zyx)
    truth = small_phantom.bleed_mask(0)[5:9]
    for seed in (0, 1):
        rng = np.random.default_rng(seed)
        session = HemorrhageSession(predictor)
        states = [(session.mask.copy(), set(session.locked_slices), dict(session.slice_clicks))]

        def record() -> None:  # an edit that changed nothing makes no undo step
            mask, locked, clicks = states[-1]
            if not (np.array_equal(session.mask, mask) and session.locked_slices == locked
                    and session.slice_clicks == clicks):
                states.append((session.mask.copy(), set(session.locked_slices), dict(session.slice_clicks)))

        for _ in range(10):
            action = rng.choice(["positive", "negative", "hand", "bad_index", "undo", "redo"])
            k = int(rng.integers(len(ks)))
            locked_before = {s: session.mask[s].copy() for s in session.locked_slices}
            if action in ("positive", "negative") and k not in session.locked_slices:
                source = truth[k] if action == "positive" or not session.mask[k].any() else session.mask[k]
                rows, cols = np.nonzero(source if source.any() else np.ones_like(source))
                pick = int(rng.integers(rows.size))
                point = (float(cols[pick]), float(rows[pick]))
                session.click(k, [point] if action == "positive" else [], [] if action == "positive" else [point],
                              propagate=bool(rng.integers(2)))
                record()
            elif action == "hand":
                edit = np.zeros(session.mask.shape[1:], bool)
                edit[rng.integers(0, 200):, rng.integers(0, 200):][:20, :20] = True
                session.set_slice_mask(k, edit)
                record()
            elif action == "bad_index":
                with pytest.raises(ValueError):
                    session.set_slice_mask(-1 - k, np.ones(session.mask.shape[1:], bool))
            elif action == "undo" and session.can_undo:
                session.undo()
                states.pop()
                mask, locked, clicks = states[-1]
                assert np.array_equal(session.mask, mask) and session.locked_slices == locked
                assert session.slice_clicks == clicks
            elif action == "redo" and session.can_redo:
                session.redo()
                record()
            for s, before in locked_before.items():  # hand edits survive everything but their own undo
                if s in session.locked_slices and action not in ("undo", "redo", "hand"):
                    assert np.array_equal(session.mask[s], before), (seed, action, s)
        while session.can_undo:
            session.undo()
        assert not session.mask.any() and not session.locked_slices and session.slice_clicks == {}


def _object_through_whole_scan(mask, slice_index, anchor, reach_px):
    """The object at a click as computed before: the whole scan labelled, then np.isin."""
    from scipy import ndimage as ndi

    if not anchor.any():
        return np.zeros_like(mask)
    labels, _ = ndi.label(mask, structure=np.ones((3, 3, 3), bool))
    touching = np.unique(labels[slice_index][anchor])
    if not touching.any() and mask.shape[0] > 1:
        near = ndi.binary_dilation(anchor, iterations=reach_px)
        ks = [k for k in (slice_index - 1, slice_index + 1) if 0 <= k < mask.shape[0]]
        touching = np.unique(np.concatenate([labels[k][near] for k in ks]))
    return np.isin(labels, touching[touching > 0])


def test_the_object_at_a_click_is_found_within_the_masks_box_exactly_as_in_the_whole_scan():
    """Labelling only the mask's own box (a thin-slice CT's whole-scan labels cost 300 MB) gives
    the same object for anchors on, beside and far from it, on slices inside and outside the box,
    and for an empty mask."""
    rng = np.random.default_rng(3)
    checked = 0
    for trial in range(40):
        mask = np.zeros((12, 40, 48), bool)
        if trial % 8:
            k0, j0, i0 = rng.integers(1, 8), rng.integers(0, 25), rng.integers(0, 30)
            mask[k0:k0 + rng.integers(1, 4), j0:j0 + 15, i0:i0 + 18] = True
            mask &= rng.random(mask.shape) < 0.55  # several components, some joined only diagonally
        for _ in range(6):
            k = int(rng.integers(0, 12))
            anchor = np.zeros((40, 48), bool)
            j, i = rng.integers(0, 38), rng.integers(0, 46)
            anchor[j:j + 3, i:i + 3] = True
            reach = int(rng.integers(1, 6))
            assert np.array_equal(object_through(mask, k, anchor, reach),
                                  _object_through_whole_scan(mask, k, anchor, reach))
            checked += int(_object_through_whole_scan(mask, k, anchor, reach).any())
    assert checked > 20  # most cases found an object: the comparison is not between empty answers
    assert occupied_extent(np.zeros((3, 4, 5), bool)) is None
    single = np.zeros((3, 4, 5), bool)
    single[1, 2, 3] = True
    assert occupied_extent(single) == (slice(1, 2), slice(2, 3), slice(3, 4))

