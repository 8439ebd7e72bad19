#!/usr/bin/env bash
# Installs, with apt, the system packages ltk needs that are missing. Idempotent.
#   scripts/setup.sh          build + run dependencies
#   scripts/setup.sh --test   also what the tests and benchmarks use (python3-torch as the
#                             reference, fastText)
#   scripts/setup.sh --fuzz   also clang and its libFuzzer/sanitizer runtimes (scripts/fuzz.sh)
set -euo pipefail

packages=(
  cmake g++ make ccache
  libtorch-dev libspdlog-dev libfmt-dev libcxxopts-dev nlohmann-json3-dev catch2 libutf8proc-dev
  # Debian's LibTorch calls the system BLAS: without this it gets the slow reference one.
  libopenblas0-openmp
  # Real corpora.
  fortunes fortunes-min fortunes-zh
  # The jieba tokenizer's default dictionary; the sentencepiece tokenizer's library.
  python3-jieba libsentencepiece-dev
  # OpenCC: simplified -> traditional Chinese, a perturbation of ltk-eval --stress.
  libopencc-dev
  # cpack -G DEB: dpkg-shlibdeps computes the package's Depends (it needs file).
  dpkg-dev file
  # ltk-serve: its HTTP client for tests and tools (cpp-httplib, found through its pkg-config file);
  # the server's decoding of gzip/deflate and brotli request bodies.
  libcpp-httplib-dev pkg-config zlib1g-dev libbrotli-dev
  # ltk-serve's allocator (apps/CMakeLists.txt: LTK_TCMALLOC).
  libtcmalloc-minimal4
  # Distributed training: Gloo's headers (c10d's CPU backend; the library comes with libtorch).
  libgloo-dev
)
if [[ "${1:-}" == "--fuzz" ]]; then
  # scripts/fuzz.sh: clang with libFuzzer and the sanitizers' runtimes.
  packages+=(clang libclang-rt-14-dev)
fi
if [[ "${1:-}" == "--test" ]]; then
  # The reference implementations (PyTorch, scikit-learn) and a browser that renders the report.
  packages+=(python3-torch python3-sklearn python3-scipy chromium)
  # fastText, the bag-of-words baseline of scripts/bench.sh.
  packages+=(fasttext)
  # scripts/bench_serve.sh: the load generator, and the Flask app under gunicorn it compares with.
  packages+=(wrk gunicorn python3-flask)
  # The distributed tests: two network namespaces joined by a veth pair (ip netns, ip link).
  packages+=(iproute2)
  # scripts/check_format.sh (clang-format-diff) and scripts/check_function_size.sh (ctags).
  packages+=(clang-format universal-ctags)
  # node runs the Hugging Face tokenizers for the WordPiece parity test (Debian's, unless one is there).
  command -v node >/dev/null && command -v npm >/dev/null || packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} packages present" >&2
  exit 0
fi

echo "setup: installing ${missing[*]}" >&2
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
