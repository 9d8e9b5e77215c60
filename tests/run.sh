#!/usr/bin/env bash
# The test suite: builds everything once, then runs unit and integration tests. Integration
# tests start their own docker-registry processes on free loopback ports and stop them.
#
#   bash tests/run.sh      (as root on Debian, missing packages are installed with apt-get,
#                           python-tuf with pip, into target/python-tuf unless python3 has it)
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v containerd >/dev/null || need+=(containerd)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v curl >/dev/null || need+=(curl ca-certificates)
# A CA and certificate for the HTTPS blob store the redirect tests read from.
command -v openssl >/dev/null || need+=(openssl)
[ -x /usr/bin/time ] || need+=(time)
# C and C++ for the crates that build native code (ring, aws-lc, libfuzzer), strip for the
# package, xz for the containerd 2.3.4 archive.
command -v cc >/dev/null || need+=(gcc libc6-dev)
command -v c++ >/dev/null || need+=(g++)
command -v strip >/dev/null || need+=(binutils)
command -v xz >/dev/null || need+=(xz-utils)
# python-tuf goes into a virtual environment unless python3 has it already (Debian's own
# python3 refuses pip installs, PEP 668).
python3 -c 'import tuf.ngclient, securesystemslib.signer' 2>/dev/null ||
  python3 -m venv --help >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# python-tuf, for the interoperability tests (tests/tests/interop.rs reads TUF_OCI_PYTHON).
if ! python3 -c 'import tuf.ngclient, securesystemslib.signer' 2>/dev/null; then
  [ -x target/python-tuf/bin/python3 ] || python3 -m venv target/python-tuf
  target/python-tuf/bin/python3 -m pip install --quiet --disable-pip-version-check \
    'tuf==7.0.1' 'securesystemslib[crypto]==1.6.0'
  export TUF_OCI_PYTHON=$PWD/target/python-tuf/bin/python3
fi

# containerd 2.3.4 for the plugin tests, from the shared archive beside this repository.
if [ ! -x target/containerd-2.3.4/ctr ]; then
  if [ ! -f ../shared/containerd/install.sh ]; then
    echo "run.sh: containerd 2.3.4 comes from ../shared/containerd/install.sh, beside this" \
      "checkout with its archive; it is missing" >&2
    exit 1
  fi
  rm -rf target/containerd-2.3.4.tmp
  sh ../shared/containerd/install.sh target/containerd-2.3.4.tmp >/dev/null
  mv target/containerd-2.3.4.tmp target/containerd-2.3.4
fi

# tuf-oci keeps trusted metadata under $XDG_CACHE_HOME by default: what the scripts below run
# outside cargo keeps it in a temp dir (cargo's own runs use target/, .cargo/config.toml).
XDG_CACHE_HOME=$(mktemp -d)
export XDG_CACHE_HOME
trap 'rm -rf "$XDG_CACHE_HOME"' EXIT

cargo build --locked --workspace --all-targets
# The README's demo, so it cannot rot: registry, signing, containerd 1.6 behind the front.
TUF_OCI_BIN=$PWD/target/debug/tuf-oci bash tests/demo.sh >/dev/null
# The benchmark harness at smoke size, so it cannot rot (figures: docs/performance.md); run
# directly, since `cargo run -p` would rebuild crates with a different feature set.
target/debug/tuf-oci-bench --smoke
# The Debian package: build, install, verified pulls with the installed binaries, purge.
bash packaging/test-deb.sh
# A short fuzzing run of every target (tests/fuzz), from the committed seeds.
bash tests/fuzz.sh
cargo test --locked --workspace
