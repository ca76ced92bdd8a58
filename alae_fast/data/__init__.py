"""Datasets: MNIST (original IDX files) and generic image folders, plus shared transforms."""

from .image_folder import ImageFolderDataset
from .mnist import MNIST_FILES
from .mnist import MNISTDataError
from .mnist import find_mnist_dir
from .mnist import load_mnist
from .mnist import mnist_images
from .transforms import downsample_to
from .transforms import pad_to
from .transforms import uint8_to_float

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
