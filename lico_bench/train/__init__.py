"""Training of baseline and LICO classifiers: ``train(cfg) -> Path`` (the checkpoint)."""
from .config import PRESETS, TrainConfig, make_config
from .trainer import EMA, augment_batch, checkpoint_path, evaluate, run_dir, train, train_one_epoch

__all__ = ["EMA", "PRESETS", "TrainConfig", "augment_batch", "checkpoint_path", "evaluate",
           "make_config", "run_dir", "train", "train_one_epoch"]
