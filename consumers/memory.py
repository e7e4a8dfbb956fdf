"""How a consumer process manages its memory: when Python collects garbage."""

import gc


def tune_garbage_collection(threshold: int) -> None:
    """Collect garbage less often, and never walk what start-up allocated.

    A consumer allocates and drops short-lived objects by the million; with Python's
    defaults much of its CPU went to collections that walked the whole heap of imported
    modules and mappings, all of which live as long as the process (bench/README.md).
    """
    if threshold == 0:
        return
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(threshold, middle, oldest)
    gc.freeze()
