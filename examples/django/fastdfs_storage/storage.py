"""Django `Storage` on top of the PyPI FastDFS client `py3Fdfs`.

Settings:
    FASTDFS_TRACKER  = "127.0.0.1:22122"          # tracker host:port
    FASTDFS_BASE_URL = "http://127.0.0.1:8888/"   # nginx with the ngx-fastdfs module

    STORAGES = {"default": {"BACKEND": "fastdfs_storage.FastDFSStorage"}, ...}

Saved names are FastDFS file IDs (group1/M00/00/00/...); `url()` is where nginx serves them.
"""
import os

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import Storage
from django.utils.deconstruct import deconstructible
from fdfs_client.client import Fdfs_client


@deconstructible
class FastDFSStorage(Storage):
    def __init__(self, tracker=None, base_url=None, timeout=30):
        tracker = tracker or settings.FASTDFS_TRACKER
        host, port = tracker.rsplit(":", 1)
        self.tracker = tracker
        self.base_url = (base_url or settings.FASTDFS_BASE_URL).rstrip("/") + "/"
        # py3Fdfs takes a dict (its README's path argument does not work).
        self.client = Fdfs_client({"host_tuple": (host,), "port": int(port), "timeout": timeout, "name": "Tracker Pool"})

    def _save(self, name, content):
        ext = os.path.splitext(name)[1].lstrip(".")[:6]
        content.seek(0)
        result = self.client.upload_by_buffer(content.read(), ext)
        return result["Remote file_id"].decode()

    def _open(self, name, mode="rb"):
        return ContentFile(self.client.download_to_buffer(name.encode())["Content"], name=name)

    def delete(self, name):
        self.client.delete_file(name.encode())

    def exists(self, name):
        # FastDFS chooses every name itself; a name asked for never collides.
        return False

    def size(self, name):
        return len(self.client.download_to_buffer(name.encode())["Content"])

    def url(self, name):
        return self.base_url + name
