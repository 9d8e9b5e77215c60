#!/usr/bin/env bash
# The tuf-oci demo: a registry on 127.0.0.1, an organisation's TUF repository in it, a team's
# delegated role signing an image, a verified pull by the signed digest, and a tampered tag
# refused. Every step uses the real tuf-oci CLI, docker-registry and skopeo.
#
#   bash tests/demo.sh            (installs docker-registry, skopeo, curl and protoc with apt-get
#                                  when missing)
#
# DEMO_PORT picks the registry port (default 5000); TUF_OCI_BIN a prebuilt tuf-oci.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tests/lib.sh
. tests/lib.sh

port=${DEMO_PORT:-5000}
reg=127.0.0.1:$port
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
command -v curl >/dev/null || need+=(curl)
# The workspace's gRPC protos are compiled with protoc.
[ -n "${TUF_OCI_BIN:-}" ] || command -v protoc >/dev/null || need+=(protobuf-compiler)
if [ ${#need[@]} -gt 0 ]; then
  step "installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ -z "${TUF_OCI_BIN:-}" ]; then
  step "building tuf-oci"
  cargo build --quiet --locked -p tuf-oci-cli
  TUF_OCI_BIN=$PWD/target/debug/tuf-oci
fi

work=$(mktemp -d)
registry_pid=
cleanup() {
  if [ -n "$registry_pid" ]; then
    kill "$registry_pid" 2>/dev/null || true
    wait "$registry_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

tuf() { "$TUF_OCI_BIN" --insecure-registry "$reg" --cache-dir "$work/cache" --root "$work/root.json" "$@"; }

step "starting docker-registry on $reg"
start_registry "$reg" "$work"
registry_pid=$REGISTRY_PID

push() { skopeo copy --quiet --insecure-policy --dest-tls-verify=false "oci:$1" "docker://$reg/$2"; }

step "pushing team-a/app:v1 with skopeo"
make_image "$work/app-v1" "hello from v1"
push "$work/app-v1" team-a/app:v1

step "the administrator creates the TUF repository $reg/org/tuf and delegates team-a/* to team-a"
tuf --metadata-repo "$reg/org/tuf" init --keys "$work/keys" --out "$work/root.json"
tuf keygen "$work/team-a"
tuf --metadata-repo "$reg/org/tuf" delegate team-a --paths 'team-a/*' --key "$work/team-a" --keys-dir "$work/keys"
tuf --metadata-repo "$reg/org/tuf" publish --keys "$work/keys"
tuf pointer set "$reg/team-a/app" --to ../../org/tuf

step "team-a signs its image; the administrator publishes snapshot and timestamp"
tuf sign "$reg/team-a/app:v1" --role team-a --key "$work/team-a"
tuf --metadata-repo "$reg/org/tuf" publish --keys "$work/keys"
tuf --metadata-repo "$reg/org/tuf" list

step "a client verifies team-a/app:v1 with nothing but the trusted root"
tuf verify "$reg/team-a/app:v1" | tee "$work/descriptor.json"
digest=$(sed -n 's/.*"digest": "\(sha256:[0-9a-f]*\)".*/\1/p' "$work/descriptor.json")
tuf verify "$reg/team-a/app@$digest" >/dev/null

step "verified pull: skopeo fetches exactly the signed digest"
skopeo copy --quiet --insecure-policy --src-tls-verify=false "docker://$reg/team-a/app@$digest" "oci:$work/pulled:v1"
echo "pulled $digest into an OCI layout"

step "an attacker with registry access moves the tag to a tampered image"
make_image "$work/evil" "tampered"
push "$work/evil" team-a/app:v1
if tuf verify "$reg/team-a/app:v1" 2>"$work/refusal"; then
  echo "DEMO FAILED: the tampered image verified" >&2
  exit 1
fi
echo "refused: $(cat "$work/refusal")"

step "demo complete"
