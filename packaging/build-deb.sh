#!/usr/bin/env bash
# Builds the containerd-tuf Debian package (tuf-oci, containerd-tuf-verifier and its client,
# containerd-tuf-transfer, systemd units, default policy, docs), versioned from the workspace.
#
#   bash packaging/build-deb.sh [--profile release|debug] [--out DIR]    # prints the .deb path
#
# --profile debug packages the binaries an earlier `cargo build` made (what CI tests); release
# (the default) builds them first.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
out=target/debian
while [ $# -gt 0 ]; do
  case $1 in
    --profile) profile=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: $0 [--profile release|debug] [--out DIR]" >&2; exit 2 ;;
  esac
done

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
arch=$(dpkg --print-architecture)
if [ "$profile" = release ]; then
  cargo build --locked --release -p tuf-oci-cli -p containerd-tuf-verifier -p containerd-tuf-transfer >&2
fi
bin=target/$profile
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

# containerd runs every executable in its image-verifier bin_dir: only the small client lives
# there. It asks the service (`containerd-tuf-verifier serve`) and, when the service does not
# answer, runs /usr/bin/containerd-tuf-verifier, which verifies in-process.
install -D -m 0755 "$bin/containerd-tuf-verifier-client" \
  "$root/opt/containerd/image-verifier/bin/containerd-tuf-verifier-client"
install -d "$root/usr/bin"
install -m 0755 "$bin/tuf-oci" "$bin/containerd-tuf-transfer" "$bin/containerd-tuf-verifier" "$root/usr/bin/"
strip --strip-unneeded "$root/usr/bin/tuf-oci" "$root/usr/bin/containerd-tuf-transfer" \
  "$root/usr/bin/containerd-tuf-verifier" \
  "$root/opt/containerd/image-verifier/bin/containerd-tuf-verifier-client"
install -D -m 0644 -t "$root/usr/lib/systemd/system" packaging/systemd/*.service
install -D -m 0644 packaging/policy.default.toml "$root/etc/containerd-tuf/policy.toml"
doc=$root/usr/share/doc/containerd-tuf
install -D -m 0644 packaging/policy.toml "$doc/policy.example.toml"
install -D -m 0644 -t "$doc" README.md docs/layout.md docs/guide.md packaging/containerd/*
# What install-node.sh reads at run time lives outside the docs (which slim images leave out).
install -D -m 0644 -t "$root/usr/share/containerd-tuf" packaging/containerd/config-2.x.toml
completions=$root/usr/share/bash-completion/completions
install -d "$completions"
"$bin/tuf-oci" completions bash > "$completions/tuf-oci"

# The newest glibc symbol version the binaries use is the libc6 they need.
glibc=$(objdump -T "$root/usr/bin/"* "$root/opt/containerd/image-verifier/bin/"* |
  grep -o 'GLIBC_[0-9.]*' | sort -Vu | tail -1 | cut -d_ -f2) ||
  { echo "build-deb: the binaries name no glibc symbol version" >&2; exit 1; }
install -d "$root/DEBIAN"
cat > "$root/DEBIAN/control" <<CONTROL
Package: containerd-tuf
Version: $version
Architecture: $arch
Maintainer: tuf-oci developers <tuf-oci@localhost>
Section: admin
Priority: optional
Depends: libc6 (>= $glibc), ca-certificates
Recommends: containerd
Description: TUF-verified image pulls for containerd, with TUF metadata in OCI registries
 tuf-oci signs, publishes, copies and verifies TUF metadata stored in OCI registries;
 containerd-tuf-verifier-client is a containerd 2.x image verifier asking the verification
 service containerd-tuf-verifier, which it runs in-process when the service does not answer;
 containerd-tuf-transfer is a verifying gRPC front for containerd 1.6 and later.
CONTROL
echo /etc/containerd-tuf/policy.toml > "$root/DEBIAN/conffiles"
units="containerd-tuf-transfer.service containerd-tuf-verifier.service"
cat > "$root/DEBIAN/postinst" <<POSTINST
#!/bin/sh
set -e
install -d -m 0700 /var/lib/containerd-tuf
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
  # Upgraded (or installed again): running services take up the new binaries.
  if [ "\$1" = configure ] && [ -n "\$2" ]; then systemctl try-restart $units || true; fi
fi
POSTINST
cat > "$root/DEBIAN/prerm" <<PRERM
#!/bin/sh
set -e
# Removed (not upgraded): the services stop and are no longer started at boot (in an image
# being built too, where systemd does not run).
if [ "\$1" = remove ]; then
  if [ -d /run/systemd/system ]; then
    systemctl disable --now $units || true
  else
    systemctl disable $units >/dev/null 2>&1 || true
  fi
fi
PRERM
cat > "$root/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
if [ "$1" = purge ]; then rm -rf /var/lib/containerd-tuf /run/containerd-tuf; fi
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
POSTRM
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

mkdir -p "$out"
deb=$out/containerd-tuf_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz -z6 --build "$root" "$deb" >&2
echo "$deb"
