#!/usr/bin/env bash
# Short fuzzing runs of every target in tests/fuzz (descriptor ⇄ target mapping, references and
# pointers, the image verifier's input, metadata parsing at the registry boundary), starting
# from the small committed seeds. FUZZ_SECONDS sets the time per target (default 60).
#
# cargo-fuzz needs sanitizer flags that are nightly-only; this machine has the stable toolchain
# alone, so RUSTC_BOOTSTRAP=1 enables them for these builds only.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
seconds=${FUZZ_SECONDS:-60}
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
for target in descriptor reference verifier_input metadata; do
  mkdir -p "$corpus/$target"
  if ! cargo fuzz run --fuzz-dir tests/fuzz "$target" "$corpus/$target" "tests/fuzz/seeds/$target" \
      -- -max_total_time="$seconds" >"$corpus/$target.log" 2>&1; then
    tail -40 "$corpus/$target.log"
    echo "fuzz: $target crashed (reproducer under tests/fuzz/artifacts/$target/)" >&2
    exit 1
  fi
  grep -E "^Done" "$corpus/$target.log" | sed "s/^/fuzz $target: /"
done
echo "fuzz: all targets ran ${seconds}s without a crash"
