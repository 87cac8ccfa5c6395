#!/usr/bin/env python3
"""Saves an uploaded image through Django's storage API into FastDFS and checks that the URL it
returns is served (byte for byte) by nginx with the ngx-fastdfs module.

    FASTDFS_TRACKER=127.0.0.1:22122 FASTDFS_BASE_URL=http://127.0.0.1:8888/ python example.py

Prints one JSON line; exits non-zero on any mismatch.
"""
import json
import os
import struct
import sys
import urllib.error
import urllib.request
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import django  # noqa: E402
from django.conf import settings  # noqa: E402

settings.configure(
    DEBUG=False,
    INSTALLED_APPS=[],
    FASTDFS_TRACKER=os.environ["FASTDFS_TRACKER"],
    FASTDFS_BASE_URL=os.environ["FASTDFS_BASE_URL"],
    STORAGES={
        "default": {"BACKEND": "fastdfs_storage.FastDFSStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    },
)
django.setup()

from django.core.files.storage import default_storage  # noqa: E402
from django.core.files.uploadedfile import SimpleUploadedFile  # noqa: E402


def png(w, h):
    rows = b"".join(b"\0" + bytes((x * 7 + y) % 256 for x in range(w * 3)) for y in range(h))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))  # noqa: E731
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def handle_upload(uploaded):
    """What a view does with request.FILES["image"]: store it, return its URL."""
    name = default_storage.save(uploaded.name, uploaded)
    return name, default_storage.url(name)


def main():
    data = png(64, 48)
    upload = SimpleUploadedFile("avatar.png", data, content_type="image/png")
    name, url = handle_upload(upload)
    assert name.startswith("group1/M00/") and name.endswith(".png"), name
    with urllib.request.urlopen(url) as r:
        served = r.read()
        ctype = r.headers.get("Content-Type")
    assert served == data, "nginx served different bytes"
    assert ctype == "image/png", ctype
    with default_storage.open(name) as f:
        assert f.read() == data
    default_storage.delete(name)
    try:
        urllib.request.urlopen(url)
        gone = False
    except urllib.error.HTTPError as e:
        gone = e.code == 404
    assert gone, "still served after delete"
    print(json.dumps({"ok": True, "name": name, "url": url, "bytes": len(data)}))


if __name__ == "__main__":
    main()
