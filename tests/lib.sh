# Shell helpers shared by tests/demo.sh and packaging/test-deb.sh.

# free_port: a TCP port free on 127.0.0.1 now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_registry HOST:PORT DIR: runs docker-registry on HOST:PORT with its storage in DIR and
# waits until it answers; sets REGISTRY_PID.
start_registry() {
  local address=$1 dir=$2
  cat > "$dir/registry.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $dir/registry
http:
  addr: $address
YML
  docker-registry serve "$dir/registry.yml" >"$dir/registry.log" 2>&1 &
  REGISTRY_PID=$!
  # Answers from this registry only: another one on the port (Debian's own service on :5000)
  # would otherwise be taken for it, while this one exited unable to bind.
  for _ in $(seq 100); do
    kill -0 "$REGISTRY_PID" 2>/dev/null || break
    curl -fs "http://$address/v2/" >/dev/null && return 0
    sleep 0.1
  done
  echo "docker-registry did not start on $address ($dir/registry.log):" >&2
  cat "$dir/registry.log" >&2
  kill "$REGISTRY_PID" 2>/dev/null || true
  return 1
}

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
