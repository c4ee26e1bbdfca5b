"""Reproducing SAMIHS fine-tuning (PR adapters + prompt encoder + mask decoder) on BCIHM,
INSTANCE 2022 or any image/label folder, with patient-level evaluation. Uses SAMIHSLib; never
the other way round."""
