"""Datasets: MNIST (original IDX files) and generic image folders, plus shared transforms."""

from .image_folder import ImageFolderDataset
from .mnist import MNIST_FILES, MNISTDataError, find_mnist_dir, load_mnist, mnist_images
from .transforms import downsample_to, pad_to, uint8_to_float

__all__ = [
    "load_mnist",
    "mnist_images",
    "find_mnist_dir",
    "MNISTDataError",
    "MNIST_FILES",
    "ImageFolderDataset",
    "uint8_to_float",
    "downsample_to",
    "pad_to",
]
