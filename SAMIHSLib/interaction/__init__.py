"""From a click to a 3D bleed: the predictor (cached embedding per slice), click handling,
propagation through the slices, the correction session with undo, automatic seeds, and the
one home of mask/region geometry and blood HU bands (``regions``)."""
