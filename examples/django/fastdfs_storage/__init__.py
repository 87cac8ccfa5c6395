"""A Django storage backend that keeps files in FastDFS (fastdfs-rs or the C original)."""
from .storage import FastDFSStorage

__all__ = ["FastDFSStorage"]
