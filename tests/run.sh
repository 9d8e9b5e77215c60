#!/usr/bin/env bash
# The test suite: builds everything once, then runs unit and integration tests. Integration
# tests start their own docker-registry processes on free loopback ports and stop them.
#
#   bash tests/run.sh      (as root on Debian, missing packages are installed with apt-get)
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
command -v protoc >/dev/null || need+=(protobuf-compiler)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

cargo build --locked --workspace --all-targets
cargo test --locked --workspace
