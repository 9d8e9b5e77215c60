#!/bin/sh
# Installs containerd-tuf on a node (or into a node image being built). Idempotent: running it
# again installs the package again (restarting the services that run) and changes nothing else.
#
#   sh install-node.sh --deb containerd-tuf_VERSION_ARCH.deb \
#       [--containerd-config /etc/containerd/config.toml] \
#       [--root org-root.json --scope org --registries reg1,reg2 [--repositories team-a/,team-b/]] \
#       [--enable verifier|transfer|verifier,transfer]
#
# --deb installs with apt-get, which installs what the package depends on first (dpkg alone
# would leave it unpacked and unconfigured where a dependency is missing: its image verifier
# in containerd's bin_dir, its policy not).
# --containerd-config adds the image-verifier bin_dir (containerd 2.x) if the file lacks it.
# --root/--scope/--registries add a protected scope to /etc/containerd-tuf/policy.toml if no
# scope of that name exists, with the root installed as /etc/containerd-tuf/roots/NAME.json.
# The policy is changed only once the edited copy checks out (`containerd-tuf-verifier check`):
# a policy that does not load refuses every pull. The services that run are restarted to read
# it (the front reads its policy when it starts).
# --enable starts these services at boot (the verification service for containerd 2.x, the
# front for 1.6/1.7), and now where systemd runs; into an image being built, at its boot.
set -eu

deb= config= root= scope= registries= repositories= enable= new_root=
while [ $# -gt 0 ]; do
  case $1 in
    --deb) deb=$2 ;;
    --containerd-config) config=$2 ;;
    --root) root=$2 ;;
    --scope) scope=$2 ;;
    --registries) registries=$2 ;;
    --repositories) repositories=$2 ;;
    --enable) enable=$2 ;;
    *) echo "install-node.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift 2
done
fail() { echo "install-node.sh: $*" >&2; exit 1; }

if [ -n "$deb" ]; then
  # Installed every time (a rebuilt package keeps its version); the policy this script
  # added scopes to is kept, never asked about. apt-get takes a file by a path with a slash.
  # Older packages too (rolling a node back), and no question asked of anyone.
  case $deb in */*) ;; *) deb=./$deb ;; esac
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --reinstall --allow-downgrades \
    -o Dpkg::Options::=--force-confold "$deb" >/dev/null
fi

if [ -n "$config" ] && ! grep -q 'io.containerd.image-verifier.v1.bindir' "$config" 2>/dev/null; then
  mkdir -p "$(dirname "$config")"
  { echo; cat /usr/share/containerd-tuf/config-2.x.toml; } >> "$config"
  echo "install-node.sh: added the image-verifier bin_dir to $config (restart containerd)"
fi

if [ -n "$scope" ]; then
  [ -n "$root" ] && [ -n "$registries" ] || { echo "install-node.sh: --scope needs --root and --registries" >&2; exit 2; }
  policy=/etc/containerd-tuf/policy.toml
  [ -f "$policy" ] || fail "$policy is missing: install the package first (--deb)"
  # However the operator spelt it (`name="org"`, indented); in the pattern, dots are dots.
  name=$(printf '%s' "$scope" | sed 's/[].[\\*^$]/\\&/g')
  if ! grep -Eq "^[[:space:]]*name[[:space:]]*=[[:space:]]*[\"']$name[\"']" "$policy"; then
    installed_root=/etc/containerd-tuf/roots/$scope.json
    edited=$(mktemp "$policy.XXXXXX")
    # Whatever stops the script, the edited copy goes, and so does a root it installed for
    # a scope it did not add (a rerun would meet it as another's).
    added=
    trap 'rm -f "$edited"; [ -n "$added" ] || [ -z "$new_root" ] || rm -f "$installed_root"' EXIT
    trap 'exit 1' INT TERM HUP
    # A root left there for this name is another's trust: never replaced.
    if [ -e "$installed_root" ]; then
      cmp -s "$root" "$installed_root" || fail "$installed_root exists and is another root: scope $scope not added"
    else
      new_root=yes
      install -D -m 0644 "$root" "$installed_root"
    fi
    # A comma-separated list as TOML strings, spaces around items dropped.
    quote() { echo "$1" | tr ',' '\n' | sed 's/^[[:space:]]*//; s/[[:space:]]*$//; /^$/d; s/.*/"&"/' | paste -sd, -; }
    {
      cat "$policy"
      echo
      echo "[[scope]]"
      echo "name = \"$scope\""
      echo "registries = [$(quote "$registries")]"
      [ -n "$repositories" ] && echo "repositories = [$(quote "$repositories")]"
      echo "root = \"$installed_root\""
    } > "$edited"
    if ! checked=$(containerd-tuf-verifier check --policy "$edited" 2>&1); then
      fail "scope $scope not added, $policy unchanged: ${checked#containerd-tuf-verifier: }"
    fi
    chmod 0644 "$edited"
    mv "$edited" "$policy"
    added=yes
    echo "install-node.sh: added scope $scope to $policy"
    if [ -d /run/systemd/system ]; then
      systemctl try-restart containerd-tuf-verifier.service containerd-tuf-transfer.service || true
    fi
  fi
fi

if [ -n "$enable" ]; then
  units=
  for service in $(echo "$enable" | tr ',' ' '); do
    case $service in
      verifier|transfer) units="$units containerd-tuf-$service.service" ;;
      *) echo "install-node.sh: --enable takes verifier and transfer, not $service" >&2; exit 2 ;;
    esac
  done
  if [ -d /run/systemd/system ]; then
    # shellcheck disable=SC2086 # one word per unit
    systemctl enable --now $units
  else
    # shellcheck disable=SC2086
    systemctl enable $units
  fi
  echo "install-node.sh: enabled$units"
fi
