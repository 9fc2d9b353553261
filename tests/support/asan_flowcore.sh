#!/usr/bin/env bash
# Sanitizer campaign for the native flow core (collectors/_flowcore.c): builds it with AddressSanitizer and
# UndefinedBehaviorSanitizer in a scratch copy of the tree and runs the differential and fuzz tests against it,
# with as many hypothesis seeds as given (default 10; each runs the fuzz tests' full example budget).
#   bash tests/support/asan_flowcore.sh [SEEDS]
# With --fuzz it instead replays fuzz corpora (tests/fuzz/fuzz_flowcore.py: the C core against the Python engine,
# e.g. the corpus an atheris campaign grew) and random mutations of them for SECONDS under the sanitizers. Coverage
# guidance is not possible here: gcc's libasan would take over libFuzzer's coverage hooks (atheris says so).
#   bash tests/support/asan_flowcore.sh --fuzz SECONDS [CORPUS_DIR ...]
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
here="$(pwd)"  # a failing fuzz input is saved here
seeds="${1:-10}"
fuzz_dirs=()
if [ "$seeds" = "--fuzz" ]; then
  fuzz_seconds="${2:?--fuzz needs SECONDS}"
  for d in "${@:3}"; do fuzz_dirs+=("$(cd "$d" && pwd)"); done
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir "$work/tree"
(cd "$repo" && git ls-files | tar -cf - -T -) | tar -xf - -C "$work/tree"
ln -s "$(cd "$repo/.." && pwd)/shared" "$work/shared"  # the tests find shared/testdata beside the tree
cd "$work/tree"
CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -O1 -g" \
  LDFLAGS="-fsanitize=address,undefined" python3 setup.py build_ext --inplace -q
export PYTHONPATH="$work/tree" LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
if [ "$seeds" = "--fuzz" ]; then
  (cd "$here" && python3 -m tests.fuzz.run flowcore --replay "$fuzz_seconds" "${fuzz_dirs[@]}")
  exit
fi
python3 -m pytest tests/unit/test_flowcore.py tests/unit/test_deep_selection.py tests/unit/test_protocol_upgrade.py -q -p no:cacheprovider \
  -k "not connections_ship and not streamed and not without_tshark and not tshark_reads and not bounded"
for seed in $(seq 1 "$seeds"); do
  python3 -m pytest tests/unit/test_flowcore.py tests/unit/test_deep_selection.py -q -p no:cacheprovider \
    -k "fuzzed or random_payloads" --hypothesis-seed="$seed"
done
