#include "ltk/data/tfidf.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "ltk/data/vocab.h"

namespace ltk {

FeatureCounts& FeatureCounts::of_thread(int64_t V) {
  thread_local FeatureCounts counts;
  if (counts.counts_.size() != static_cast<size_t>(std::max<int64_t>(V, 0))) {
    counts.counts_.assign(static_cast<size_t>(std::max<int64_t>(V, 0)), 0);
    counts.ids_.clear();
    counts.passes_ = 0;
    for (auto top = static_cast<uint64_t>(std::max<int64_t>(V - 1, 1)); top != 0; top >>= 8) ++counts.passes_;
  }
  return counts;
}

void FeatureCounts::collect(const int32_t* tokens, int64_t n, bool sorted) {
  for (int32_t id : ids_) counts_[static_cast<size_t>(id)] = 0;
  ids_.clear();
  const size_t V = counts_.size();
  // The table is MBs: each count is fetched a few ids ahead (every id here indexes it: prefetch never faults).
  constexpr int64_t kAhead = 8;
  for (int64_t k = 0; k < n; ++k) {
    if (k + kAhead < n && static_cast<size_t>(tokens[k + kAhead]) < V)
      __builtin_prefetch(&counts_[static_cast<size_t>(tokens[k + kAhead])]);
    const int32_t t = tokens[k];
    if (t < Vocabulary::kFirstWordId || static_cast<size_t>(t) >= V) continue;
    // listed before it is counted: a push_back that throws leaves no count that would outlive it
    if (counts_[static_cast<size_t>(t)] == 0) ids_.push_back(t);
    ++counts_[static_cast<size_t>(t)];
  }
  if (sorted) sort();
}

void FeatureCounts::sort() {
  if (ids_.size() < 48) {
    std::sort(ids_.begin(), ids_.end());
    return;
  }
  spare_.resize(ids_.size());
  for (int pass = 0; pass < passes_; ++pass) {
    const int shift = 8 * pass;
    size_t at[256] = {};
    for (int32_t id : ids_) ++at[(static_cast<uint32_t>(id) >> shift) & 255];
    size_t sum = 0;
    for (size_t& a : at) sum += std::exchange(a, sum);
    for (int32_t id : ids_) spare_[at[(static_cast<uint32_t>(id) >> shift) & 255]++] = id;
    ids_.swap(spare_);
  }
}

void tfidf_row(const TfIdfTable& table, const int32_t* tokens, int64_t n, FeatureCounts& counts,
               std::vector<double>& values, bool sorted) {
  counts.collect(tokens, n, sorted);
  const std::vector<int32_t>& cols = counts.ids();
  const double* idf = table.idf;
  const int64_t* block = table.block;
  values.resize(cols.size());
  double norm2[2] = {0, 0};
  constexpr size_t kAhead = 8;  // as collect(): idf and block are MBs
  for (size_t e = 0; e < cols.size(); ++e) {
    if (e + kAhead < cols.size()) {
      __builtin_prefetch(idf + cols[e + kAhead]);
      if (block) __builtin_prefetch(block + cols[e + kAhead]);
    }
    const auto tf = static_cast<double>(counts.count(cols[e]));
    // ln 1 + 1 is 1 exactly: most features occur once in a short text
    const double w = (table.sublinear_tf && tf != 1.0 ? std::log(tf) + 1.0 : tf) * idf[cols[e]];
    norm2[block ? block[cols[e]] : 0] += w * w;
    values[e] = w;
  }
  if (!block) {
    const double norm = std::sqrt(norm2[0]);
    for (double& v : values) v /= norm;
    return;
  }
  const double norm[2] = {std::sqrt(norm2[0]), std::sqrt(norm2[1])};
  for (size_t e = 0; e < cols.size(); ++e) values[e] /= norm[block[cols[e]]];
}

namespace {

// acc += w * x, one fused multiply-add per element, written out rather than left to the
// compiler's contraction, so that every CPU gives the same bits: the fma instruction where the CPU
// has it, std::fma's exact result elsewhere. float64 x: as LibTorch's x86 embedding_bag kernel
// accumulates (in the same order), so that the sparse path's float64 logits are the forward()'s to
// the last bit where both round alike (the tests allow the sum's rounding). float32 x: widened to
// float64, the float32 weights' sums (in any order: see score_text).
#if defined(__x86_64__) || defined(__i386__)
template <typename X>
__attribute__((target("fma"))) void fma_row_native(double w, const X* x, double* acc, int64_t K) {
  for (int64_t k = 0; k < K; ++k) acc[k] = __builtin_fma(w, static_cast<double>(x[k]), acc[k]);
}
bool cpu_has_fma() {
  return __builtin_cpu_supports("fma");
}
#else
template <typename X>
void fma_row_native(double w, const X* x, double* acc, int64_t K) {
  for (int64_t k = 0; k < K; ++k) acc[k] = std::fma(w, static_cast<double>(x[k]), acc[k]);
}
bool cpu_has_fma() {
  return true;
}  // std::fma is the instruction on these CPUs
#endif
template <typename X>
void fma_row(double w, const X* x, double* acc, int64_t K) {
  static const bool native = cpu_has_fma();
  if (native) return fma_row_native(w, x, acc, K);
  for (int64_t k = 0; k < K; ++k) acc[k] = std::fma(w, static_cast<double>(x[k]), acc[k]);
}

}  // namespace

void score_text(const TfIdfTable& table, const int32_t* tokens, int64_t n, const double* W, const double* bias,
                int64_t K, double* out, FeatureCounts& counts, std::vector<double>& values) {
  tfidf_row(table, tokens, n, counts, values, /*sorted=*/true);
  const std::vector<int32_t>& cols = counts.ids();
  std::fill(out, out + K, 0.0);
  // The weight rows are scattered over a table of tens of MB: ask for a few ahead.
  constexpr size_t kAhead = 4;
  for (size_t e = 0; e < std::min(kAhead, cols.size()); ++e) __builtin_prefetch(W + static_cast<int64_t>(cols[e]) * K);
  for (size_t e = 0; e < cols.size(); ++e) {
    if (e + kAhead < cols.size()) __builtin_prefetch(W + static_cast<int64_t>(cols[e + kAhead]) * K);
    fma_row(values[e], W + static_cast<int64_t>(cols[e]) * K, out, K);
  }
  for (int64_t k = 0; k < K; ++k) out[k] += bias[k];
}

void score_text(const TfIdfTable& table, const int32_t* tokens, int64_t n, const float* W, const float* bias, int64_t K,
                float* out, FeatureCounts& counts, std::vector<double>& values) {
  tfidf_row(table, tokens, n, counts, values, /*sorted=*/false);
  const std::vector<int32_t>& cols = counts.ids();
  thread_local std::vector<double> acc;
  acc.assign(static_cast<size_t>(K), 0.0);
  constexpr size_t kAhead = 4;
  auto fetch = [&](size_t e) {  // a row's first and last bytes: it may span two cache lines
    const float* row = W + static_cast<int64_t>(cols[e]) * K;
    __builtin_prefetch(row);
    __builtin_prefetch(row + K - 1);
  };
  for (size_t e = 0; e < std::min(kAhead, cols.size()); ++e) fetch(e);
  for (size_t e = 0; e < cols.size(); ++e) {
    if (e + kAhead < cols.size()) fetch(e + kAhead);
    fma_row(values[e], W + static_cast<int64_t>(cols[e]) * K, acc.data(), K);
  }
  for (int64_t k = 0; k < K; ++k)
    out[k] = static_cast<float>(acc[static_cast<size_t>(k)] + static_cast<double>(bias[k]));
}

}  // namespace ltk
