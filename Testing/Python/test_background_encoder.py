"""Background encoding: outward from the focus slice, one worker thread, clicks jump the queue."""

import threading

from SAMIHSLib.interaction.background_encoder import BackgroundEncoder
from SAMIHSLib.interaction.predictor import SAMIHSPredictor
from SAMIHSLib.interaction.prompts import SlicePrompt


def test_encodes_outward_on_one_thread_then_clicks_are_decoder_only(lite_model, small_phantom):
    predictor = SAMIHSPredictor(lite_model)
    predictor.set_volume(small_phantom.volume_hu, small_phantom.spacing_zyx)
    order, threads = [], set()
    encoder = BackgroundEncoder(predictor, on_encoded=lambda k, _: (order.append(k),
                                                                    threads.add(threading.get_ident())))
    try:
        encoder.focus(8, radius=2)
        assert encoder.wait_idle(timeout=120)
        assert order == [8, 7, 9, 6, 10]  # nearest first
        assert threads == {encoder._thread.ident} and encoder._thread.ident != threading.get_ident()
        calls = predictor.encoder_calls
        predictor.predict(9, SlicePrompt(box=(100, 100, 140, 140)))
        assert predictor.encoder_calls == calls  # already encoded: decoder only

        encoder.focus(0)  # queue the whole volume, then click somewhere not yet encoded
        queued_from = len(order)
        predictor.predict(15, SlicePrompt(box=(100, 100, 140, 140)))
        done_meanwhile = order[queued_from:]
        # 15 was encoded by the click itself, at most after the slice the worker was busy with: not
        # after the 11 queued slices 0..14 still unencoded (each takes as long as slice 15)
        assert predictor.is_encoded(15) and len(done_meanwhile) <= 3, done_meanwhile
        encoder.cancel()
        assert encoder.wait_idle(timeout=60)
        assert not encoder.errors
    finally:
        encoder.stop()
    assert not encoder._thread.is_alive()
