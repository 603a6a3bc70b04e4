"""Make collection tarballs, as `ansible-galaxy collection download` gives them, from the
collections installed in this Python (the test virtualenv's `ansible` package): a test
fixture for hosts without access to Galaxy.

    python3 pack_collection.py DEST_DIR NAMESPACE.NAME...

The `ansible` package leaves out some files its collections' FILES.json lists (CI
configuration), which ansible-galaxy would refuse to install: FILES.json is rewritten to
the files present, each still checked against its recorded checksum.
"""

import hashlib
import io
import json
import os
import sys
import tarfile

import ansible_collections


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def add_bytes(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def pack(dest_dir, fqcn):
    namespace, name = fqcn.split(".")
    src = os.path.join(ansible_collections.__path__[0], namespace, name)
    with open(os.path.join(src, "MANIFEST.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    with open(os.path.join(src, "FILES.json"), encoding="utf-8") as f:
        files = json.load(f)
    kept = []
    for entry in files["files"]:
        path = os.path.join(src, entry["name"])
        if entry["ftype"] == "dir":
            if os.path.isdir(path):
                kept.append(entry)
            continue
        if not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            if sha256(f.read()) != entry["chksum_sha256"]:
                raise SystemExit("%s: %s differs from its FILES.json checksum" % (fqcn, entry["name"]))
        kept.append(entry)
    files["files"] = kept
    files_json = json.dumps(files, indent=4).encode()
    manifest["file_manifest_file"]["chksum_sha256"] = sha256(files_json)
    version = manifest["collection_info"]["version"]
    os.makedirs(dest_dir, exist_ok=True)
    out = os.path.join(dest_dir, "%s-%s-%s.tar.gz" % (namespace, name, version))
    with tarfile.open(out, "w:gz") as tar:
        add_bytes(tar, "MANIFEST.json", json.dumps(manifest, indent=4).encode())
        add_bytes(tar, "FILES.json", files_json)
        for entry in kept:
            if entry["name"] != ".":
                tar.add(os.path.join(src, entry["name"]), arcname=entry["name"], recursive=False)
    return out


if __name__ == "__main__":
    for collection in sys.argv[2:]:
        print(pack(sys.argv[1], collection))
