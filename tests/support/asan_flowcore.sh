#!/usr/bin/env bash
# Sanitizer campaign for the native flow core (collectors/_flowcore.c): builds it with AddressSanitizer and
# UndefinedBehaviorSanitizer in a scratch copy of the tree and runs the differential and fuzz tests against it,
# with as many hypothesis seeds as given (default 10; each runs the fuzz tests' full example budget).
#   bash tests/support/asan_flowcore.sh [SEEDS]
# With --fuzz it runs tests/fuzz/fuzz_flowcore.py (the C core against the Python engine) under the sanitizers for
# SECONDS instead, from the given corpus folders (e.g. the one an atheris campaign grew; new inputs go to the first).
# With clang and its compiler-rt (Debian: clang-14, libclang-rt-14-dev) the core is also built with libFuzzer's coverage
# instrumentation, and atheris is guided by the C code's coverage as well as the Python code's, through one runtime
# that merges ASan (UBSan's handlers included) with libFuzzer, as atheris's own source build does. Without clang, gcc's
# sanitizers are used and the corpus is replayed with random mutations, unguided (gcc's libasan would take over
# libFuzzer's coverage hooks).
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
clang="$(command -v clang || command -v clang-14 || true)"
merged=""
if [ "$seeds" = "--fuzz" ] && [ -n "$clang" ] && [ -f "$("$clang" -print-file-name=libclang_rt.asan-x86_64.a)" ]; then
  rt="$("$clang" -print-file-name=libclang_rt.asan-x86_64.a)"
  mkdir "$work/rt"
  (cd "$work/rt" && ar x "$rt" && ar x "${rt/.asan-/.fuzzer_no_main-}" && rm -f asan_preinit.c*.o &&
    "${clang/clang/clang++}" -shared -o ../asan_with_fuzzer.so ./*.o -ldl -lpthread -lrt)
  merged="$work/asan_with_fuzzer.so"
  CC="$clang" LDSHARED="$clang -shared" CFLAGS="-fsanitize=address,undefined,fuzzer-no-link \
    -fno-sanitize-recover=undefined -fno-omit-frame-pointer -O1 -g" python3 setup.py build_ext --inplace -q
  export LD_PRELOAD="$merged"
else
  CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -O1 -g" \
    LDFLAGS="-fsanitize=address,undefined" python3 setup.py build_ext --inplace -q
  export LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
fi
export PYTHONPATH="$work/tree"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
if [ -n "$merged" ]; then
  corpus="${fuzz_dirs[0]:-$here/fuzz-flowcore-corpus}"
  (cd "$here" && python3 -m tests.fuzz.run flowcore "$corpus" -max_total_time="$fuzz_seconds" -print_final_stats=1 \
    -artifact_prefix="$here/" "${fuzz_dirs[@]:1}")
  exit
elif [ "$seeds" = "--fuzz" ]; then
  (cd "$here" && python3 -m tests.fuzz.run flowcore --replay "$fuzz_seconds" "${fuzz_dirs[@]}")
  exit
fi
python3 -m pytest tests/unit/test_flowcore.py tests/unit/test_deep_selection.py tests/unit/test_protocol_upgrade.py \
  tests/unit/test_deep_fanout.py -q -p no:cacheprovider \
  -k "not connections_ship and not streamed and not without_tshark and not tshark_reads and not bounded and not children"
for seed in $(seq 1 "$seeds"); do
  python3 -m pytest tests/unit/test_flowcore.py tests/unit/test_deep_selection.py tests/unit/test_deep_fanout.py -q \
    -p no:cacheprovider -k "fuzzed or random_payloads or routes_random" --hypothesis-seed="$seed"
done
