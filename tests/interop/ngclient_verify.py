"""Verify a target with python-tuf's ngclient against metadata served over HTTP.

usage: ngclient_verify.py METADATA_URL ROOT_FILE TARGET_NAME EXPECTED_SHA256 [EXPECTED_MEDIA_TYPE]
Prints the target's custom field as JSON; exits non-zero when anything fails.
"""
import json
import sys
import tempfile

from tuf.ngclient import Updater


def main() -> None:
    url, root_file, name, sha256 = sys.argv[1:5]
    media_type = sys.argv[5] if len(sys.argv) > 5 else None
    with open(root_file, "rb") as f:
        root = f.read()
    with tempfile.TemporaryDirectory() as metadata_dir:
        updater = Updater(metadata_dir=metadata_dir, metadata_base_url=url, bootstrap=root)
        updater.refresh()
        info = updater.get_targetinfo(name)
        if info is None:
            sys.exit(f"ngclient: no target {name}")
        if info.hashes.get("sha256") != sha256:
            sys.exit(f"ngclient: {name} has sha256 {info.hashes}, expected {sha256}")
        if media_type is not None and info.unrecognized_fields.get("custom", {}).get("mediaType") != media_type:
            sys.exit(f"ngclient: {name} custom {info.unrecognized_fields}")
        print(json.dumps(info.unrecognized_fields.get("custom", {})))


if __name__ == "__main__":
    main()
