"""Datasets, their manifests and evaluation preprocessing.

Typical use::

    from splitbench.data import Preprocessing, open_dataset

    dataset = open_dataset("imagenet-val-1300", root="~/data",
                           transform=Preprocessing(crop=224, resize=256).transform())
"""

from splitbench.data.datasets import ImageDataset, open_dataset, worker_errors_unwrapped
from splitbench.data.images import load_rgb_image
from splitbench.data.manifests import (
    DATA_ROOT_ENV,
    Manifest,
    SplitInfo,
    compute_file_list_checksum,
    file_list_sha256,
    list_manifests,
    load_manifest,
    resolve_data_root,
    verify_manifest,
)
from splitbench.data.transforms import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocessing,
)

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DATA_ROOT_ENV",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageDataset",
    "Manifest",
    "Preprocessing",
    "SplitInfo",
    "compute_file_list_checksum",
    "file_list_sha256",
    "list_manifests",
    "load_manifest",
    "load_rgb_image",
    "open_dataset",
    "resolve_data_root",
    "verify_manifest",
    "worker_errors_unwrapped",
]
