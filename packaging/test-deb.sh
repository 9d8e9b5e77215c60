#!/usr/bin/env bash
# Builds the package from the debug binaries, installs it on this machine, checks where the
# files land and that systemd accepts the units, runs verified pulls with the installed
# binaries and the packaged containerd configuration (containerd 2.3.4, real registry), then
# removes and purges the package. Run as root after `cargo build --workspace`.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tests/lib.sh
. tests/lib.sh

work=$(mktemp -d)
registry_pid=
containerd_pid=
cleanup() {
  for pid in $containerd_pid $registry_pid; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  dpkg -P containerd-tuf >/dev/null 2>&1 || true
  rm -rf "$work" /etc/containerd-tuf/roots
  rm -f /etc/systemd/system/multi-user.target.wants/containerd-tuf-*.service
}
trap cleanup EXIT
fail() { echo "test-deb: $*" >&2; exit 1; }

deb=$(bash packaging/build-deb.sh --profile debug --out "$work/deb")
# Twice: the node install script is idempotent.
node_config=$work/node-config.toml
for _ in 1 2; do
  sh packaging/install-node.sh --deb "$deb" --containerd-config "$node_config" >/dev/null
done
[ "$(grep -c 'image-verifier.v1.bindir' "$node_config")" = 1 ] || fail "install-node.sh is not idempotent"
for f in /usr/bin/tuf-oci /usr/bin/containerd-tuf-transfer /usr/bin/containerd-tuf-verifier \
         /opt/containerd/image-verifier/bin/containerd-tuf-verifier-client \
         /usr/lib/systemd/system/containerd-tuf-verifier.service \
         /usr/lib/systemd/system/containerd-tuf-transfer.service \
         /etc/containerd-tuf/policy.toml /usr/share/doc/containerd-tuf/policy.example.toml \
         /usr/share/containerd-tuf/config-2.x.toml /usr/share/bash-completion/completions/tuf-oci; do
  [ -e "$f" ] || fail "$f missing after dpkg -i"
done
[ -d /var/lib/containerd-tuf ] || fail "postinst did not create /var/lib/containerd-tuf"
tuf-oci --version | grep -q "tuf-oci " || fail "tuf-oci --version"
containerd-tuf-verifier --version | grep -q "containerd-tuf-verifier " || fail "verifier --version"
/opt/containerd/image-verifier/bin/containerd-tuf-verifier-client --version |
  grep -q "containerd-tuf-verifier-client " || fail "client --version"
# containerd runs every executable in bin_dir: one verifier only.
[ "$(ls /opt/containerd/image-verifier/bin)" = containerd-tuf-verifier-client ] ||
  fail "bin_dir holds $(ls /opt/containerd/image-verifier/bin | tr '\n' ' ')"
containerd-tuf-transfer --version | grep -q "containerd-tuf-transfer " || fail "transfer --version"
systemd-analyze verify /usr/lib/systemd/system/containerd-tuf-verifier.service \
  /usr/lib/systemd/system/containerd-tuf-transfer.service || fail "systemd-analyze verify"
echo "test-deb: package installed; files, --version and units check out"

# A registry with a signed and an unsigned image, signed with the installed tuf-oci.
port=$(free_port)
reg=127.0.0.1:$port
start_registry "$reg" "$work"
registry_pid=$REGISTRY_PID
tuf() { tuf-oci --insecure-registry "$reg" --root "$work/root.json" "$@"; }
make_image "$work/signed" "signed"
make_image "$work/unsigned" "unsigned"
skopeo copy --quiet --insecure-policy --dest-tls-verify=false "oci:$work/signed" "docker://$reg/app/x:v1"
skopeo copy --quiet --insecure-policy --dest-tls-verify=false "oci:$work/unsigned" "docker://$reg/app/x:v2"
tuf --metadata-repo "$reg/app/x" init --keys "$work/keys" --out "$work/root.json" 2>/dev/null
tuf sign "$reg/app/x:v1" --role targets --key "$work/keys/targets" 2>/dev/null
tuf --metadata-repo "$reg/app/x" publish --keys "$work/keys" 2>/dev/null

# install-node.sh adds a scope (on a registry the pulls below do not use) only once the edited
# policy checks out, and leaves the policy as it was otherwise.
policy=/etc/containerd-tuf/policy.toml
sh packaging/install-node.sh --root "$work/root.json" --scope node --registries " 127.0.0.1:1 , " >/dev/null
grep -q '^name = "node"' "$policy" || fail "install-node.sh did not add the scope"
grep -q '^registries = \["127.0.0.1:1"\]$' "$policy" || fail "registries not trimmed: $(cat "$policy")"
containerd-tuf-verifier check --policy "$policy" >/dev/null || fail "the edited policy does not load"
cp "$policy" "$work/policy.before"
echo '<html>' > "$work/not-a-root.json"
if sh packaging/install-node.sh --root "$work/not-a-root.json" --scope broken --registries 127.0.0.1:2 \
    2>"$work/refused-scope"; then
  fail "a scope whose root is no root was added"
fi
grep -q "scope broken not added, $policy unchanged: .*scope broken: root metadata cannot be parsed" \
  "$work/refused-scope" || fail "refusal: $(cat "$work/refused-scope")"
cmp -s "$work/policy.before" "$policy" || fail "a refused scope changed the policy"
[ ! -e /etc/containerd-tuf/roots/broken.json ] || fail "a refused scope left its root"
# A root already there for the name is another's trust: the scope is refused, the root kept.
echo '{"another":"root"}' > /etc/containerd-tuf/roots/kept.json
if sh packaging/install-node.sh --root "$work/root.json" --scope kept --registries 127.0.0.1:3 \
    2>"$work/refused-kept"; then
  fail "a scope was added over another root"
fi
grep -q "roots/kept.json exists and is another root" "$work/refused-kept" ||
  fail "refusal: $(cat "$work/refused-kept")"
[ "$(cat /etc/containerd-tuf/roots/kept.json)" = '{"another":"root"}' ] || fail "another root was replaced"
cmp -s "$work/policy.before" "$policy" || fail "a refused scope changed the policy"
rm /etc/containerd-tuf/roots/kept.json
[ "$(ls /etc/containerd-tuf)" = "$(printf 'policy.toml\nroots')" ] || fail "left beside the policy: $(ls /etc/containerd-tuf)"
echo "test-deb: install-node.sh adds scopes that check out, and only those"
# Services enabled at boot (systemd does not run here, as in an image being built).
wants=/etc/systemd/system/multi-user.target.wants
sh packaging/install-node.sh --enable verifier,transfer >/dev/null
for unit in containerd-tuf-verifier containerd-tuf-transfer; do
  [ -L "$wants/$unit.service" ] || fail "$unit not enabled"
done
if sh packaging/install-node.sh --enable verifyer 2>/dev/null; then fail "--enable took a misspelt service"; fi

# containerd 2.3.4 with the packaged bin_dir snippet.
sh ../shared/containerd/install.sh "$work/containerd" >/dev/null
{
  echo 'version = 3'
  echo "root = \"$work/cd/root\""
  echo "state = \"$work/cd/state\""
  echo 'disabled_plugins = ["io.containerd.grpc.v1.cri"]'
  echo "[grpc]"
  echo "  address = \"$work/cd/containerd.sock\""
  echo "[ttrpc]"
  echo "  address = \"$work/cd/containerd.sock.ttrpc\""
  cat /usr/share/containerd-tuf/config-2.x.toml
} > "$work/config.toml"
cat > "$work/policy.toml" <<POLICY
default = "deny"
cache_dir = "$work/cache"
insecure_registries = ["$reg"]
[[scope]]
name = "test"
registries = ["$reg"]
root = "$work/root.json"
POLICY
start_containerd() {
  CONTAINERD_TUF_POLICY=$1 "$work/containerd/containerd" --config "$work/config.toml" >"$work/containerd.log" 2>&1 &
  containerd_pid=$!
  for _ in $(seq 200); do "$work/containerd/ctr" --address "$work/cd/containerd.sock" version >/dev/null 2>&1 && return 0; sleep 0.05; done
  fail "containerd did not start"
}
ctr() { "$work/containerd/ctr" --address "$work/cd/containerd.sock" "$@"; }
stop_containerd() { kill "$containerd_pid"; wait "$containerd_pid" 2>/dev/null || true; containerd_pid=; }

# The installed default policy protects nothing: pulls behave as before.
start_containerd /etc/containerd-tuf/policy.toml
ctr images pull --plain-http "$reg/app/x:v2" >/dev/null || fail "default policy blocked a pull"
ctr images rm "$reg/app/x:v2" >/dev/null
stop_containerd
# With a scope and no service: the client runs the installed full executable, so the signed
# image pulls and the unsigned one is refused with its reason.
start_containerd "$work/policy.toml"
ctr images pull --plain-http "$reg/app/x:v1" >/dev/null || fail "signed pull refused"
if ctr images pull --plain-http "$reg/app/x:v2" >"$work/refused" 2>&1; then fail "unsigned pull allowed"; fi
grep -q "no trusted role signs target app/x:v2" "$work/refused" || fail "reason missing: $(cat "$work/refused")"
stop_containerd
echo "test-deb: verified pulls through the installed verifier work"

dpkg -r containerd-tuf >/dev/null
for unit in containerd-tuf-verifier containerd-tuf-transfer; do
  [ ! -e "$wants/$unit.service" ] && [ ! -L "$wants/$unit.service" ] || fail "dpkg -r left $unit enabled"
done
for f in /usr/bin/tuf-oci /usr/bin/containerd-tuf-verifier \
         /opt/containerd/image-verifier/bin/containerd-tuf-verifier-client \
         /usr/lib/systemd/system/containerd-tuf-transfer.service; do
  [ ! -e "$f" ] || fail "$f left after dpkg -r"
done
[ -e /etc/containerd-tuf/policy.toml ] || fail "dpkg -r must keep the edited configuration"
dpkg -P containerd-tuf >/dev/null
[ ! -e /etc/containerd-tuf/policy.toml ] || fail "dpkg -P left the configuration"
# What install-node.sh added is the operator's: purging keeps it.
[ -e /etc/containerd-tuf/roots/node.json ] || fail "dpkg -P removed a root the package did not install"
rm -r /etc/containerd-tuf
[ ! -e /var/lib/containerd-tuf ] || fail "dpkg -P left the cache"
echo "test-deb: package builds, installs, verifies pulls, removes and purges cleanly"
