#!/usr/bin/env bash
# Short fuzzing runs of every target in tests/fuzz (descriptor ⇄ target mapping, references and
# pointers, the image verifier's input, metadata parsing at the registry boundary), starting
# from the small committed seeds. FUZZ_SECONDS sets the time per target (default 60); targets
# run side by side, one per core.
#
# cargo-fuzz needs sanitizer flags that are nightly-only; this machine has the stable toolchain
# alone, so RUSTC_BOOTSTRAP=1 enables them for these builds only. No AddressSanitizer: the
# project's crates forbid unsafe code, and the coverage instrumentation that guides the
# fuzzer is there without it.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
seconds=${FUZZ_SECONDS:-60}
flags=(--fuzz-dir tests/fuzz --sanitizer none)
targets=(descriptor reference verifier_input metadata)
corpus=$(mktemp -d)
# Each target runs in its own process group (job control), so that fuzzers still running when
# the script ends (interrupted, or a failure elsewhere) are stopped with the cargo and shell
# processes above them: killing the job's shell alone left the fuzzer running.
set -m
stop() {
  local job
  for job in $(jobs -p); do
    kill -- "-$job" 2>/dev/null || true
  done
  rm -rf "$corpus"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fuzz() {
  local target=$1
  mkdir -p "$corpus/$target"
  if ! cargo fuzz run "${flags[@]}" "$target" "$corpus/$target" "tests/fuzz/seeds/$target" \
      -- -max_total_time="$seconds" >"$corpus/$target.log" 2>&1; then
    tail -40 "$corpus/$target.log"
    echo "fuzz: $target crashed (reproducer under tests/fuzz/artifacts/$target/)" >&2
    return 1
  fi
  grep -E "^Done" "$corpus/$target.log" | sed "s/^/fuzz $target: /" || true
}

cargo fuzz build "${flags[@]}"
parallel=$(nproc)
failed=0
for ((i = 0; i < ${#targets[@]}; i += parallel)); do
  pids=()
  for target in "${targets[@]:i:parallel}"; do
    fuzz "$target" </dev/null &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do
    wait "$pid" || failed=1
  done
done
[ "$failed" = 0 ] || exit 1
echo "fuzz: all targets ran ${seconds}s without a crash"
