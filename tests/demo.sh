#!/usr/bin/env bash
# The tuf-oci demo: a registry on 127.0.0.1, an organisation's TUF repository in it, a team's
# delegated role signing an image, a verified pull into containerd (Debian's 1.6, behind the
# verifying front), and a tampered tag refused by tuf-oci and by containerd. Every step uses
# the real tuf-oci CLI, containerd-tuf-transfer, containerd, ctr, docker-registry and skopeo.
#
#   bash tests/demo.sh            (as root; installs docker-registry, skopeo, containerd, curl,
#                                  python3, protoc and a C compiler with apt-get when missing)
#
# DEMO_PORT picks the registry port (default: a free one; Debian's docker-registry package runs
# its own registry on :5000); TUF_OCI_BIN a prebuilt tuf-oci.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tests/lib.sh
. tests/lib.sh

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
command -v curl >/dev/null || need+=(curl)
command -v containerd >/dev/null || need+=(containerd)
command -v python3 >/dev/null || need+=(python3)
# Building needs a C compiler (ring and aws-lc build native code).
[ -n "${TUF_OCI_BIN:-}" ] || command -v cc >/dev/null || need+=(gcc libc6-dev)
# The workspace's gRPC protos are compiled with protoc.
[ -n "${TUF_OCI_BIN:-}" ] || command -v protoc >/dev/null || need+=(protobuf-compiler)
if [ ${#need[@]} -gt 0 ]; then
  step "installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
port=${DEMO_PORT:-$(free_port)}
reg=127.0.0.1:$port
if [ -z "${TUF_OCI_BIN:-}" ]; then
  step "building tuf-oci and the transfer front"
  cargo build --quiet --locked -p tuf-oci-cli -p containerd-tuf-transfer
  TUF_OCI_BIN=$PWD/target/debug/tuf-oci
fi
FRONT_BIN=${FRONT_BIN:-$(dirname "$TUF_OCI_BIN")/containerd-tuf-transfer}

work=$(mktemp -d)
registry_pid=
containerd_pid=
front_pid=
cleanup() {
  for pid in $front_pid $containerd_pid $registry_pid; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
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

step "containerd (Debian's 1.6) behind the verifying front, which the policy tells to protect team-a/"
cat > "$work/containerd.toml" <<TOML
version = 2
root = "$work/containerd/root"
state = "$work/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$work/containerd/containerd.sock"
[ttrpc]
  address = "$work/containerd/containerd.sock.ttrpc"
TOML
containerd --config "$work/containerd.toml" >"$work/containerd.log" 2>&1 &
containerd_pid=$!
cat > "$work/policy.toml" <<POLICY
default = "deny"
cache_dir = "$work/tuf-cache"
insecure_registries = ["$reg"]
[[scope]]
name = "org"
registries = ["$reg"]
repositories = ["team-a/"]
root = "$work/root.json"
metadata = "$reg/org/tuf"
POLICY
"$FRONT_BIN" --containerd "$work/containerd/containerd.sock" --listen "$work/tuf.sock" \
  --policy "$work/policy.toml" >"$work/front.log" 2>&1 &
front_pid=$!
ctr() { command ctr --address "$work/tuf.sock" "$@"; }
for _ in $(seq 100); do ctr version >/dev/null 2>&1 && break; sleep 0.1; done
ctr version >/dev/null || { echo "containerd or the front did not start" >&2; cat "$work/containerd.log" "$work/front.log" >&2; exit 1; }
echo "ctr --address $work/tuf.sock talks to containerd through the front"

step "verified pull: ctr pulls team-a/app:v1 through the front"
ctr images pull --plain-http "$reg/team-a/app:v1" >/dev/null
ctr images ls | grep "team-a/app:v1"

step "an attacker with registry access moves the tag to a tampered image"
make_image "$work/evil" "tampered"
push "$work/evil" team-a/app:v1
if tuf verify "$reg/team-a/app:v1" 2>"$work/refusal"; then
  echo "DEMO FAILED: the tampered image verified" >&2
  exit 1
fi
echo "refused: $(cat "$work/refusal")"
ctr images rm "$reg/team-a/app:v1" >/dev/null
if ctr images pull --plain-http "$reg/team-a/app:v1" >"$work/pull" 2>&1; then
  echo "DEMO FAILED: containerd recorded the tampered image" >&2
  exit 1
fi
echo "containerd refused: $(grep -o 'tuf-oci: .*' "$work/pull" | head -1)"
ctr images ls -q | grep -q "team-a/app:v1" && { echo "DEMO FAILED: image record left" >&2; exit 1; }
echo "no image record was made"

step "demo complete"
