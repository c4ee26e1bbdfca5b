"""Engine errors, importable without torch."""


class EngineError(RuntimeError):
    """An engine cannot run this model here (missing precision support, failed verification)."""
