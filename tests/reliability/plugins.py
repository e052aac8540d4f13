"""Test-only registrations for the reliability suite (:func:`registered`, used by the tests
that need them and by ``entry.py``, so subprocesses see them too):

* (on import) the tiny models ``baseline_tiny`` / ``lico_tiny`` of tests/tiny.py;
* explainer ``degenerate``: per batch, the map of the 1st image is all NaN, of the 2nd all
  zero, of the 3rd constant (0.5); the others are a real (if crude) map, |image| summed
  over channels;
* dataset ``nanshapes``: the first 40 test images of ``shapes``; image 5 has a NaN pixel,
  image 6 an infinite one.
"""
import contextlib
import dataclasses

import tests.tiny  # noqa: F401  (registers baseline_tiny / lico_tiny)
from lico_bench.data import LicoDataset, list_datasets, register_dataset
from lico_bench.explainers import Explainer, list_explainers, register_explainer

NAN_IMAGE, INF_IMAGE = 5, 6


class DegenerateMaps(Explainer):
    name = "degenerate"

    def __init__(self):
        super().__init__()

    def explain(self, model, images, targets):
        maps = images.abs().sum(1)                                   # [B, H, W]
        fills = [float("nan"), 0.0, 0.5]
        for j in range(min(len(fills), maps.shape[0])):
            maps[j] = fills[j]
        return maps


class NanShapes(LicoDataset):
    def __init__(self, split="test", image_size=None, seed=0):
        from lico_bench.data.shapes import ShapesDataset

        self.base = ShapesDataset(split, image_size=image_size, seed=seed, n=40)
        self.info = dataclasses.replace(self.base.info, name="nanshapes")
        self.split = split

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        b = self.get_batch([i])
        return b.images[0], int(b.labels[0]), b.masks[0]

    def get_batch(self, indices):
        b = self.base.get_batch(indices)
        images = b.images.clone()
        for j, i in enumerate(indices):
            if i == NAN_IMAGE:
                images[j, 0, 3, 3] = float("nan")
            if i == INF_IMAGE:
                images[j, 1, 0, 0] = float("inf")
        return b._replace(images=images)


@contextlib.contextmanager
def registered():
    """``degenerate`` and ``nanshapes`` registered for the duration only: the explainer
    contract tests run over every registered explainer, and these two break the contract
    on purpose."""
    from lico_bench.data.registry import _DATASETS
    from lico_bench.explainers import _EXPLAINERS

    added = []
    if "degenerate" not in list_explainers():
        register_explainer("degenerate", DegenerateMaps)
        added.append((_EXPLAINERS, "degenerate"))
    if "nanshapes" not in list_datasets():
        register_dataset("nanshapes", lambda split="test", root=None, image_size=None, seed=0,
                         download=False: NanShapes(split, image_size, seed))
        added.append((_DATASETS, "nanshapes"))
    try:
        yield
    finally:
        for registry, name in added:
            registry._items.pop(name, None)
