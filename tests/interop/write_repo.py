"""Write a TUF repository with python-tuf's Metadata API, the way another implementation would.

usage: write_repo.py OUT_DIR IMAGE_NAME IMAGE_SHA256 IMAGE_SIZE IMAGE_MEDIA_TYPE

OUT_DIR/metadata gets 1.root.json, 1.targets.json, 1.team-a.json, 1.snapshot.json and
timestamp.json (consistent snapshots); top-level targets delegates team-a/* to role team-a,
which signs IMAGE_NAME as an OCI descriptor (custom.mediaType). Top-level targets also signs a
plain file, files/hello.txt, stored as OUT_DIR/targets/files/<sha256>.hello.txt.
"""
import hashlib
import os
import sys
from datetime import datetime, timedelta, timezone

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer


def main() -> None:
    out, name, sha256, size, media_type = sys.argv[1:6]
    metadata_dir = os.path.join(out, "metadata")
    os.makedirs(metadata_dir, exist_ok=True)
    expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=7)
    signers = {role: CryptoSigner.generate_ed25519() for role in
               ("root", "targets", "snapshot", "timestamp", "team-a")}

    root = Metadata(Root(expires=expires, consistent_snapshot=True))
    for role in ("root", "targets", "snapshot", "timestamp"):
        root.signed.add_key(signers[role].public_key, role)

    team = Metadata(Targets(expires=expires))
    team.signed.targets[name] = TargetFile(
        length=int(size), hashes={"sha256": sha256}, path=name,
        unrecognized_fields={"custom": {"mediaType": media_type}})

    content = b"hello from python-tuf\n"
    digest = hashlib.sha256(content).hexdigest()
    targets_dir = os.path.join(out, "targets", "files")
    os.makedirs(targets_dir, exist_ok=True)
    with open(os.path.join(targets_dir, f"{digest}.hello.txt"), "wb") as f:
        f.write(content)

    targets = Metadata(Targets(expires=expires))
    targets.signed.targets["files/hello.txt"] = TargetFile.from_data("files/hello.txt", content)
    targets.signed.delegations = Delegations(
        keys={signers["team-a"].public_key.keyid: signers["team-a"].public_key},
        roles={"team-a": DelegatedRole("team-a", [signers["team-a"].public_key.keyid], 1,
                                       False, paths=["team-a/*"])})

    serializer = JSONSerializer(compact=False)

    def write(md, filename, signer):
        md.sign(signer)
        data = md.to_bytes(serializer)
        with open(os.path.join(metadata_dir, filename), "wb") as f:
            f.write(data)
        return data

    write(root, "1.root.json", signers["root"])
    team_bytes = write(team, "1.team-a.json", signers["team-a"])
    targets_bytes = write(targets, "1.targets.json", signers["targets"])
    snapshot = Metadata(Snapshot(expires=expires))
    snapshot.signed.meta["targets.json"] = MetaFile(
        1, len(targets_bytes), {"sha256": hashlib.sha256(targets_bytes).hexdigest()})
    snapshot.signed.meta["team-a.json"] = MetaFile(
        1, len(team_bytes), {"sha256": hashlib.sha256(team_bytes).hexdigest()})
    snapshot_bytes = write(snapshot, "1.snapshot.json", signers["snapshot"])
    timestamp = Metadata(Timestamp(expires=expires))
    timestamp.signed.snapshot_meta = MetaFile(
        1, len(snapshot_bytes), {"sha256": hashlib.sha256(snapshot_bytes).hexdigest()})
    write(timestamp, "timestamp.json", signers["timestamp"])


if __name__ == "__main__":
    main()
