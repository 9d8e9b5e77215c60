#!/usr/bin/env bash
# The tuf-oci demo: a registry on 127.0.0.1, an organisation's TUF repository in it, a team's
# delegated role signing an image, a verified pull by the signed digest, and a tampered tag
# refused. Every step uses the real tuf-oci CLI, docker-registry and skopeo.
#
#   bash tests/demo.sh            (installs docker-registry and skopeo with apt-get when missing)
#
# DEMO_PORT picks the registry port (default 5000); TUF_OCI_BIN a prebuilt tuf-oci.
set -euo pipefail
cd "$(dirname "$0")/.."

port=${DEMO_PORT:-5000}
reg=127.0.0.1:$port
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if ! command -v docker-registry >/dev/null || ! command -v skopeo >/dev/null; then
  step "installing docker-registry and skopeo"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry skopeo >/dev/null
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
cat > "$work/registry.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: $reg
YML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do curl -fs "http://$reg/v2/" >/dev/null && break; sleep 0.1; done

# An OCI image layout with one layer holding $2, built from scratch (no docker engine needed).
make_image() {
  local dir=$1 content=$2 tmp blob
  tmp=$(mktemp -d); mkdir -p "$dir/blobs/sha256"
  printf '%s\n' "$content" > "$tmp/hello.txt"
  tar --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$tmp" -cf "$tmp/layer.tar" hello.txt
  blob() { local d; d=$(sha256sum "$1" | cut -d' ' -f1); cp "$1" "$dir/blobs/sha256/$d"; echo "$d"; }
  local layer size_layer config size_config manifest size_manifest
  layer=$(blob "$tmp/layer.tar"); size_layer=$(stat -c %s "$tmp/layer.tar")
  printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"config":{}}' "$layer" > "$tmp/config.json"
  config=$(blob "$tmp/config.json"); size_config=$(stat -c %s "$tmp/config.json")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$config" "$size_config" "$layer" "$size_layer" > "$tmp/manifest.json"
  manifest=$(blob "$tmp/manifest.json"); size_manifest=$(stat -c %s "$tmp/manifest.json")
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s}]}' \
    "$manifest" "$size_manifest" > "$dir/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' > "$dir/oci-layout"
  rm -rf "$tmp"
}
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
