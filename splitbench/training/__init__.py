"""Training classifiers from the zoo: batched augmentation, a resumable loop, exports."""

from splitbench.training.augment import CifarAugment
from splitbench.training.trainer import TrainConfig, TrainResult, train_classifier

__all__ = ["CifarAugment", "TrainConfig", "TrainResult", "train_classifier"]
