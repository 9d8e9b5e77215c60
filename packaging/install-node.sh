#!/bin/sh
# Installs containerd-tuf on a node (or into a node image being built). Idempotent: running it
# again installs the package again (restarting the services that run) and changes nothing else.
#
#   sh install-node.sh --deb containerd-tuf_VERSION_ARCH.deb \
#       [--containerd-config /etc/containerd/config.toml] \
#       [--root org-root.json --scope org --registries reg1,reg2 [--repositories team-a/,team-b/]]
#
# --containerd-config adds the image-verifier bin_dir (containerd 2.x) if the file lacks it.
# --root/--scope/--registries add a protected scope to /etc/containerd-tuf/policy.toml if no
# scope of that name exists, with the root installed as /etc/containerd-tuf/roots/NAME.json.
set -eu

deb= config= root= scope= registries= repositories=
while [ $# -gt 0 ]; do
  case $1 in
    --deb) deb=$2 ;;
    --containerd-config) config=$2 ;;
    --root) root=$2 ;;
    --scope) scope=$2 ;;
    --registries) registries=$2 ;;
    --repositories) repositories=$2 ;;
    *) echo "install-node.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift 2
done

if [ -n "$deb" ]; then
  # Installed every time (a rebuilt package keeps its version); the policy this script
  # added scopes to is kept, never asked about.
  dpkg -i --force-confold "$deb"
fi

if [ -n "$config" ] && ! grep -q 'io.containerd.image-verifier.v1.bindir' "$config" 2>/dev/null; then
  mkdir -p "$(dirname "$config")"
  { echo; cat /usr/share/containerd-tuf/config-2.x.toml; } >> "$config"
  echo "install-node.sh: added the image-verifier bin_dir to $config (restart containerd)"
fi

if [ -n "$scope" ]; then
  [ -n "$root" ] && [ -n "$registries" ] || { echo "install-node.sh: --scope needs --root and --registries" >&2; exit 2; }
  policy=/etc/containerd-tuf/policy.toml
  if ! grep -q "^name = \"$scope\"" "$policy"; then
    install -D -m 0644 "$root" "/etc/containerd-tuf/roots/$scope.json"
    quote() { echo "$1" | tr ',' '\n' | sed '/^$/d; s/.*/"&"/' | paste -sd, -; }
    {
      echo
      echo "[[scope]]"
      echo "name = \"$scope\""
      echo "registries = [$(quote "$registries")]"
      [ -n "$repositories" ] && echo "repositories = [$(quote "$repositories")]"
      echo "root = \"/etc/containerd-tuf/roots/$scope.json\""
    } >> "$policy"
    echo "install-node.sh: added scope $scope to $policy"
  fi
fi
