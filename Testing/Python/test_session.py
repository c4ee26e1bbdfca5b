"""Corrections, locked (hand-edited) slices and exact undo/redo on a session."""

import numpy as np
import pytest

from SAMIHSLib.predictor import SAMIHSPredictor
from SAMIHSLib.session import UNDO_DEPTH, HemorrhageSession

from conftest import deepest_point


@pytest.fixture
def session(lite_model, small_phantom):
    predictor = SAMIHSPredictor(lite_model)
    predictor.set_volume(small_phantom.volume_hu, small_phantom.spacing_zyx)
    return HemorrhageSession(predictor)


def _first_click(session, phantom, bleed=0):
    truth = phantom.bleed_mask(bleed)
    k = int(np.argmax(truth.reshape(truth.shape[0], -1).sum(axis=1)))
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
    from SAMIHSLib.validation import InputError

    with pytest.raises(InputError, match="outside the image"):
        session.click(3, [(-5.0, 10.0)])
    assert not session.mask.any() and not session.can_undo
