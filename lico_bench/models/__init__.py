"""Model registry, :class:`ModelCfg` and checkpoints.

``baseline_<arch>``, ``lico_<arch>``, LICO's variants ``lico_<variant>_<arch>`` (see
:mod:`lico_bench.lico.variants`) and LICO's peers ``guided_<arch>``, ``rrr_<arch>``,
``sgt_<arch>`` (see :mod:`lico_bench.guidance`) build the *same* classifier: they change
only how it is trained (its text branch lives in :mod:`lico_bench.lico` and is never part of the inference
model). A :class:`ModelCfg` is attached as ``model.cfg`` and travels inside every
checkpoint, so a checkpoint rebuilds its model without being told what it is.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from ..errors import UserError
from ..io import safe_torch_load, torch_save
from ..schemas import CHECKPOINT
from ..registry import Registry
from .backbones import Classifier, resnet, wide_resnet

from ..guidance.families import FAMILIES
from ..guidance.families import model_name as family_model_name
from ..lico.variants import VARIANTS, model_name

# 2: ModelCfg gained ``variant`` and ``lico_settings``. A format-1 lico checkpoint was
# trained with the rolled text targets: it loads as ``lico_rolled_<arch>``.
CHECKPOINT_FORMAT = 2


@dataclass
class ModelCfg:
    """Everything needed to rebuild a model and feed it images."""

    name: str                      # registry name, e.g. "lico_r18"
    arch: str                      # backbone, e.g. "resnet18" (shared by baseline_/lico_)
    num_classes: int
    image_size: int = 32
    mean: Tuple[float, ...] = (0.0, 0.0, 0.0)
    std: Tuple[float, ...] = (1.0, 1.0, 1.0)
    class_names: Tuple[str, ...] = ()
    cam_layer: str = "features"    # dotted module path of the default CAM target layer
    dataset: str = ""
    family: str = "baseline"       # "baseline", "lico" or a peer (guided, rrr, sgt): how trained
    text_encoder: Optional[str] = None  # LICO only: the frozen text encoder used in training
    variant: Optional[str] = None  # LICO only: "paper", "rolled", ... (lico/variants.py)
    # LICO only, filled by the trainer: the settings it trained with (text_targets, ot_grad,
    # alpha, beta, n_ctx), which --alpha etc. may have changed from the variant's.
    lico_settings: Dict[str, Any] = field(default_factory=dict)
    # Peers only (guided, rrr, sgt), filled by the trainer: the family's hyper-parameters it
    # trained with (guided_lambda, guided_share; rrr_lambda; sgt_k, sgt_lambda, sgt_rank).
    guidance_settings: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mean"], d["std"], d["class_names"] = list(self.mean), list(self.std), list(self.class_names)
        d["lico_settings"] = dict(self.lico_settings)
        d["guidance_settings"] = dict(self.guidance_settings)
        return d

    def describe(self) -> Dict[str, Any]:
        """What the tables need to know of a model: family, arch, variant, LICO or peer
        settings."""
        return {"family": self.family, "arch": self.arch, "variant": self.variant,
                **({"lico_settings": dict(self.lico_settings)} if self.lico_settings else {}),
                **({"guidance_settings": dict(self.guidance_settings)}
                   if self.guidance_settings else {})}

    @classmethod
    def from_dict(cls, d: Dict[str, Any], where: str = "the checkpoint") -> "ModelCfg":
        """The config of a checkpoint's ``cfg`` dict, each field typed as annotated here;
        a one-line UserError naming ``where`` otherwise."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise UserError(f"model config has unknown keys {sorted(unknown)}; the checkpoint was "
                            "written by another version of lico-bench.")
        from ..config import check_field_value, field_hints

        hints = field_hints(cls)
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in d
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise UserError(f"model config of {where} has no {', '.join(missing)}; it is damaged "
                            "or not lico-bench's, train again.")
        try:  # each field typed as its annotation says (``num_classes: "ten"`` was accepted)
            d = {k: check_field_value(hints[k], v, f"model config field {k}", f"of {where}")
                 for k, v in d.items()}
        except UserError as e:
            raise UserError(f"{e} It is damaged or not lico-bench's; train again.") from None
        for k in ("mean", "std", "class_names"):
            if k in d:
                d[k] = tuple(d[k])
        cfg = cls(**d)
        why = cfg._inconsistent()
        if why:
            raise UserError(f"model config of {where}: {why}; it is damaged or not lico-bench's, "
                            "train again.")
        return cfg

    def _inconsistent(self) -> Optional[str]:
        """What no model lico-bench trains can have (a forged or damaged config), or None."""
        from ..options import IMAGE_SIZE

        if self.num_classes < 1:
            return f"num_classes is {self.num_classes}"
        if not IMAGE_SIZE.contains(self.image_size):
            return f"image_size {self.image_size} is not {IMAGE_SIZE.describe()}"
        if len(self.mean) != 3 or len(self.std) != 3 or not all(s > 0 for s in self.std):
            return f"mean {list(self.mean)} and std {list(self.std)} are not 3 values each, std > 0"
        known = ("baseline", "lico", *FAMILIES)   # the peers (guided, rrr, sgt) too
        if self.family not in known:
            return f"family is {self.family!r}, not one of {', '.join(map(repr, known))}"
        return None


_MODELS: Registry[Callable[..., Classifier]] = Registry("model")
_ARCHS: Dict[str, Tuple[Callable[[int, int], Classifier], str]] = {
    # arch: (builder(num_classes, image_size), default CAM layer)
    "resnet18": (lambda k, s: resnet(18, k, s), "features.layer4"),
    "resnet50": (lambda k, s: resnet(50, k, s), "features.layer4"),
    "wrn28_2": (lambda k, s: wide_resnet(28, 2, k), "features.relu"),
    "wrn28_8": (lambda k, s: wide_resnet(28, 8, k), "features.relu"),
}
_SHORT = {"r18": "resnet18", "r50": "resnet50", "wrn28_2": "wrn28_2", "wrn28_8": "wrn28_8"}


def register_model(name: str, factory: Optional[Callable[..., Classifier]] = None):
    """Register ``factory(num_classes, image_size, **cfg_fields) -> Classifier`` (with ``.cfg``)."""
    return _MODELS.register(name, factory)


def _make_factory(family: str, short: str, variant: Optional[str] = None):
    arch = _SHORT[short]
    name = (f"baseline_{short}" if family == "baseline" else model_name(variant, short)
            if family == "lico" else family_model_name(family, short))

    def factory(num_classes: int, image_size: int = 32, **cfg_fields) -> Classifier:
        build, cam_layer = _ARCHS[arch]
        model = build(num_classes, image_size)
        cfg_fields.setdefault("text_encoder", "minilm" if family == "lico" else None)
        model.cfg = ModelCfg(name=name, arch=arch, num_classes=num_classes, image_size=image_size,
                             cam_layer=cam_layer, family=family, variant=variant, **cfg_fields)
        return model

    factory.__doc__ = (f"baseline {arch} classifier." if family == "baseline" else
                       f"LICO ({variant}: {VARIANTS[variant].summary}) {arch} classifier."
                       if family == "lico" else f"{FAMILIES[family].summary}; {arch} classifier.")
    return factory


for _short in _SHORT:
    register_model(f"baseline_{_short}", _make_factory("baseline", _short))
    for _variant in VARIANTS:
        register_model(model_name(_variant, _short), _make_factory("lico", _short, _variant))
    for _family in FAMILIES:
        register_model(family_model_name(_family, _short), _make_factory(_family, _short))


def list_models() -> List[str]:
    return _MODELS.names()


def describe_model(name: str) -> Dict[str, Any]:
    """Family, arch and LICO variant of registered model ``name``, without building it."""
    check_model_name(name)
    for short, arch in _SHORT.items():
        if name == f"baseline_{short}":
            return {"family": "baseline", "arch": arch, "variant": None}
        for variant in VARIANTS:
            if name == model_name(variant, short):
                return {"family": "lico", "arch": arch, "variant": variant}
        for family in FAMILIES:
            if name == family_model_name(family, short):
                return {"family": family, "arch": arch, "variant": None}
    return {"family": None, "arch": None, "variant": None}   # registered by a plugin


def check_model_name(name: str) -> None:
    """A one-line :class:`UserError` listing the known names when ``name`` is not registered."""
    _MODELS.get(name)


# A kept epoch of a trained model: "<registered name>@e<epoch>", e.g. lico_wrn28_2@e5.
KEPT_EPOCH_SEP = "@e"


def parse_model_ref(ref: str) -> Tuple[str, Optional[int]]:
    """A model as ``run`` names it -> ``(registered name, kept epoch or None)``.

    ``"lico_wrn28_2"`` -> ``("lico_wrn28_2", None)``: the trained model (``model.pt``);
    ``"lico_wrn28_2@e5"`` -> ``("lico_wrn28_2", 5)``: the weights ``train --keep-epochs``
    kept after epoch 5 (``model_e5.pt``). Any other use of ``@``, or an unregistered name,
    is a one-line :class:`UserError`.
    """
    if "@" not in ref:
        check_model_name(ref)
        return ref, None
    base, sep, epoch = ref.rpartition(KEPT_EPOCH_SEP)
    if not (sep and base and epoch.isdigit() and not epoch.startswith("0") and "@" not in base):
        raise UserError(f"model {ref!r}: a kept epoch is written MODEL@eN with N >= 1 "
                        f"(e.g. lico_wrn28_2@e5).")
    check_model_name(base)
    return base, int(epoch)


def create_model(name: str, num_classes: int, image_size: int = 32, dataset_info=None,
                 **cfg_fields) -> Classifier:
    """Build registered model ``name``; ``dataset_info`` fills mean/std/class names/dataset."""
    if num_classes < 1:
        raise UserError(f"num_classes must be >= 1, got {num_classes}.")
    if dataset_info is not None:
        cfg_fields.setdefault("mean", tuple(dataset_info.mean))
        cfg_fields.setdefault("std", tuple(dataset_info.std))
        cfg_fields.setdefault("class_names", tuple(dataset_info.class_names))
        cfg_fields.setdefault("dataset", dataset_info.name)
    return _MODELS.get(name)(num_classes, image_size, **cfg_fields)


def get_module(model: nn.Module, path: str) -> nn.Module:
    """The submodule at dotted ``path`` (e.g. ``features.layer4``), or a one-line error."""
    try:
        return model.get_submodule(path)
    except AttributeError:
        raise UserError(f"model has no layer {path!r}; pass one of its module names "
                        f"(e.g. {', '.join(n for n, _ in list(model.named_modules())[1:4])}).") from None


def save_checkpoint(path: str | os.PathLike, model: Classifier, extra: Optional[dict] = None) -> Path:
    """Write ``{format, cfg, state_dict, extra}`` atomically to ``path``."""
    # contiguous: a channels-last model (as trained) is saved in the standard layout
    obj = {"format": CHECKPOINT_FORMAT, "cfg": model.cfg.to_dict(),
           "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
           "extra": extra or {}}
    return torch_save(obj, path)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint dict (tensors and plain containers only: nothing in it runs), with
    a one-line error for a missing, corrupt or unsafe file."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"checkpoint {str(path)!r} does not exist; train one with "
                        "'lico-bench train' or pass the right path.")
    if path.is_dir():
        raise UserError(f"checkpoint {str(path)!r} is a folder; pass the checkpoint file in it "
                        "(model.pt).")
    what, fix = f"checkpoint {str(path)!r}", "delete it and train again"
    obj = CHECKPOINT.check(safe_torch_load(path, what, fix), what, fix)
    if obj.get("format", 0) > CHECKPOINT_FORMAT:
        raise UserError(f"checkpoint {str(path)!r} has format {obj['format']}, newer than this "
                        f"lico-bench ({CHECKPOINT_FORMAT}); upgrade lico-bench.")
    return obj


def _upgrade_cfg(obj: dict) -> dict:
    """The checkpoint's model config in the current format (format 1 had no variants: its
    LICO models were trained with rolled text targets, today's ``lico_rolled_<arch>``)."""
    cfg = dict(obj["cfg"])
    if obj.get("format", 1) < 2 and cfg.get("family") == "lico" and "variant" not in cfg:
        short = cfg.get("name", "")[len("lico_"):]
        cfg.update(name=model_name("rolled", short), variant="rolled")
    return cfg


def load_checkpoint(path: str | os.PathLike, name: Optional[str] = None,
                    num_classes: Optional[int] = None, dataset: Optional[str] = None,
                    map_location: str | torch.device = "cpu",
                    image_size: Optional[int] = None, epoch: Optional[int] = None) -> Classifier:
    """Rebuild the model saved at ``path``; check it against what the caller expects.

    ``epoch``: the file must be the weights kept after that epoch (``train --keep-epochs``
    writes it in ``extra["epoch"]``).

    The model carries ``model.cfg`` (its :class:`ModelCfg`) and ``model.train_cfg``, the
    training options saved with it (``extra["train_cfg"]``, a dict; ``{}`` when it has none).

    A checkpoint of another architecture, class count, dataset or image size is a one-line
    error (a CNN with global pooling *runs* on any size, but its numbers mean nothing on
    images of a size it was not trained for).
    """
    obj = read_checkpoint(path)
    where = f"checkpoint {str(path)!r}"
    cfg = ModelCfg.from_dict(_upgrade_cfg(obj), where)
    if name is not None and name != cfg.name:
        raise UserError(f"{where} holds {cfg.name} (a {cfg.arch}), not {name}; pass a checkpoint "
                        f"of {name} or the model name {cfg.name}.")
    if num_classes is not None and num_classes != cfg.num_classes:
        raise UserError(f"{where} has {cfg.num_classes} classes but {num_classes} are expected; "
                        "use a checkpoint trained on this dataset.")
    if dataset is not None and cfg.dataset and dataset != cfg.dataset:
        raise UserError(f"{where} was trained on {cfg.dataset!r}, not {dataset!r}; use a "
                        "checkpoint trained on this dataset.")
    if image_size is not None and image_size != cfg.image_size:
        raise UserError(f"{where} was trained on {cfg.image_size} px images, not {image_size} px; "
                        f"use --image-size {cfg.image_size} or a checkpoint trained at {image_size} px.")
    if epoch is not None and (obj.get("extra") or {}).get("epoch") != epoch:
        held = (obj.get("extra") or {}).get("epoch")
        raise UserError(f"{where} holds " + (f"the weights after epoch {held}" if held else
                        "no kept epoch") + f", not those after epoch {epoch}; pass the file "
                        "that 'train --keep-epochs' wrote for it.")
    fields = cfg.to_dict()
    model = create_model(cfg.name, cfg.num_classes, cfg.image_size,
                         **{k: v for k, v in fields.items()
                            if k not in ("name", "arch", "num_classes", "image_size", "cam_layer",
                                         "family", "variant")})
    model.cfg = cfg
    # the training options the checkpoint saved (TrainConfig.to_dict(); {} when it has none,
    # e.g. a model saved by hand): what the run's manifest records as trained
    train_cfg = (obj.get("extra") or {}).get("train_cfg")
    model.train_cfg = dict(train_cfg) if isinstance(train_cfg, dict) else {}
    try:
        model.load_state_dict(obj["state_dict"])
    except RuntimeError as e:   # the keys or shapes that differ, not just torch's first line
        raise UserError(f"{where} does not match its own architecture {cfg.arch} "
                        f"({' '.join(str(e).split())[:200]}); it is damaged, train again.") from None
    return model.to(map_location).eval()


__all__ = ["Classifier", "ModelCfg", "check_model_name", "create_model", "describe_model",
           "get_module", "list_models", "parse_model_ref",
           "load_checkpoint", "read_checkpoint", "register_model", "save_checkpoint"]
