"""The predictor a cross-validation evaluates in one fold: that fold's checkpoint, run as the app
runs it, with one model in memory at a time."""

import dataclasses
from typing import Dict, Optional, Tuple

from SAMIHSLib.imaging.preprocessing import PreprocessingConfig
from SAMIHSLib.interaction.predictor import SAMIHSPredictor


class FoldPredictors:
    """Predictors for ``spec`` (a model name or a checkpoint path; ``{fold}`` in it stands for the
    fold) on ``engine``. A click-trained LiteMedSAM gets lite-base as its second opinion, as in the
    app, unless ``second_opinion`` is False."""

    def __init__(self, spec: str, engine: str, second_opinion: bool = True) -> None:
        self.spec, self.engine, self.second_opinion = spec, engine, second_opinion
        self._held: Dict[Tuple[str, Optional[PreprocessingConfig]], SAMIHSPredictor] = {}

    def for_fold(self, fold: int, preprocessing: Optional[PreprocessingConfig] = None) -> SAMIHSPredictor:
        """The predictor of fold ``fold``'s model, fed ``preprocessing`` instead of its own when given;
        the one held before is dropped when the model changes."""
        from SAMIHSLib.engines import make_engine
        from SAMIHSLib.interaction.predictor import add_second_opinion, fine_tuned_from_lite_base
        from SAMIHSLib.models import load_model

        path = self.spec.replace("{fold}", str(fold))
        key = (path, preprocessing)
        if key not in self._held:
            self._held.clear()  # one model in memory at a time
            model = load_model(path, device="cpu")
            if preprocessing is not None:  # the engine's graphs start after preprocessing: they stay valid
                # another window, never other channels than the model was trained on
                preprocessing = dataclasses.replace(
                    preprocessing, neighbour_channels=model.config.preprocessing.neighbour_channels)
                model.config = dataclasses.replace(model.config, preprocessing=preprocessing)
            predictor = SAMIHSPredictor(model, engine=make_engine(model, self.engine))
            if self.second_opinion and fine_tuned_from_lite_base(model):
                add_second_opinion(predictor)
            self._held[key] = predictor
        return self._held[key]
