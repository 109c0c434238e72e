#!/usr/bin/env bash
# A short run of every fuzz target in fuzz/ (see FUZZING.md), so that none can rot: each
# replays its seeds (recorded from real traffic) and every input that once crashed it, then
# fuzzes for FLEETBUS_FUZZ_SECONDS (default 5). Works on a fresh machine with the stable
# toolchain: cargo-fuzz is installed on first use, and it and the build are cached outside the
# repository in ~/.cache/fleetbus (FLEETBUS_CACHE). `scripts/fuzz-smoke.sh TARGET …` runs only
# those.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${FLEETBUS_CACHE:-$HOME/.cache/fleetbus}"
seconds="${FLEETBUS_FUZZ_SECONDS:-5}"
export PATH="$cache/tools/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz into $cache/tools"
  cargo install cargo-fuzz --locked --version 0.13.2 --root "$cache/tools"
fi
# Its own target folder: the instrumented build shares nothing with the workspace's.
export CARGO_TARGET_DIR="$cache/target-fuzz"

# No sanitizer: the code forbids unsafe, and libFuzzer's coverage needs no nightly toolchain.
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build --sanitizer none
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for target in "${targets[@]}"; do
  inputs=()
  for dir in "fuzz/seeds/$target" "fuzz/regressions/$target"; do
    [ -d "$dir" ] && inputs+=("$dir")
  done
  mkdir -p "$work/$target"
  printf '== fuzz %-16s ' "$target"
  if ! cargo fuzz run --sanitizer none "$target" "$work/$target" "${inputs[@]}" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 \
      >"$work/$target.log" 2>&1; then
    echo "FAILED"
    tail -n 40 "$work/$target.log"
    exit 1
  fi
  grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$work/$target.log" | awk '{print $2 " inputs"}'
done
