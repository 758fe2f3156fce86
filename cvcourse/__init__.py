"""cvcourse: computer vision beyond classification, the package behind the book."""

__version__ = "0.1.0"
