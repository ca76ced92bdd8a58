"""Datasets: MNIST (original IDX files), generic image folders and prepared (pre-resized) image
datasets, plus shared transforms."""

from .image_folder import IMAGE_EXTENSIONS
from .image_folder import ImageFolderDataset
from .image_folder import square_image
from .mnist import MNIST_FILES
from .mnist import MNISTDataError
from .mnist import find_mnist_dir
from .mnist import load_mnist
from .mnist import load_mnist_split
from .mnist import mnist_images
from .mnist import same_writers_order
from .prepared import PreparedDataset
from .prepared import PrepareReport
from .prepared import collate_uint8
from .prepared import is_prepared
from .prepared import prepare_dataset
from .transforms import downsample_to
from .transforms import pad_to
from .transforms import uint8_to_float

__all__ = [
    "load_mnist",
    "load_mnist_split",
    "same_writers_order",
    "mnist_images",
    "find_mnist_dir",
    "MNISTDataError",
    "MNIST_FILES",
    "ImageFolderDataset",
    "IMAGE_EXTENSIONS",
    "square_image",
    "PreparedDataset",
    "PrepareReport",
    "prepare_dataset",
    "is_prepared",
    "collate_uint8",
    "uint8_to_float",
    "downsample_to",
    "pad_to",
]
