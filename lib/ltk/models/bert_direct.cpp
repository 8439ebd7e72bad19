#include "ltk/models/bert_direct.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/gelu.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "ltk/core/blas.h"
#include "ltk/core/error.h"
#include "ltk/models/quantize.h"

namespace ltk {

namespace {

/// A batch's real tokens, sample after sample: sample b holds rows [start[b], start[b] + length[b]).
struct Tokens {
  std::vector<int64_t> id, type, position, start, length;
};

/// The batch's real tokens; false when the batch is not this path's (a sample without tokens or
/// whose first token is padding, an id outside the tables, more than max_tokens tokens).
bool real_tokens(const Batch& batch, const BertDirectWeights& w, int64_t max_tokens, Tokens& out) {
  const int64_t B = batch.ids.size(0), T = batch.ids.size(1);
  if (T > w.position.size(0)) return false;  // the LibTorch path says why
  const auto mask = batch.mask.contiguous();
  const auto ids = batch.ids.contiguous();
  const auto types = batch.token_types.defined() ? batch.token_types.contiguous() : torch::Tensor();
  const bool* m = mask.data_ptr<bool>();
  const int64_t* id = ids.data_ptr<int64_t>();
  const int64_t* type = types.defined() ? types.data_ptr<int64_t>() : nullptr;
  const int64_t vocab = w.word.size(0), type_vocab = w.token_type.size(0);
  // Every id, padded positions' too: LibTorch's path refuses a batch with any id outside the table.
  for (int64_t i = 0; i < B * T; ++i)
    if (id[i] < 0 || id[i] >= vocab) return false;
  for (int64_t b = 0; b < B; ++b) {
    if (!m[b * T]) return false;
    out.start.push_back(static_cast<int64_t>(out.id.size()));
    for (int64_t t = 0; t < T; ++t) {
      const int64_t i = b * T + t;
      if (!m[i]) continue;
      const int64_t ty = type ? type[i] : 0;
      if (ty < 0 || ty >= type_vocab) return false;
      out.id.push_back(id[i]);
      out.type.push_back(ty);
      out.position.push_back(t);
    }
    out.length.push_back(static_cast<int64_t>(out.id.size()) - out.start.back());
    if (static_cast<int64_t>(out.id.size()) > max_tokens) return false;
  }
  return true;
}

template <typename T>
const T* ptr(const torch::Tensor& t) {
  return t.data_ptr<T>();
}

template <typename T>
void gemm(bool b_transposed, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b, int64_t ldb, T beta,
          T* c, int64_t ldc) {
  if (!blas_gemm(b_transposed, m, n, k, T(1), a, lda, b, ldb, beta, c, ldc))  // (sizes are checked before)
    throw Error(
        fmt::format("BERT's direct path: the BLAS refused a {}x{}x{} matrix product; set LTK_BERT_DIRECT=0 in "
                    "the environment to run LibTorch's operators instead, and report this as a bug",
                    m, n, k));
}

/// y [rows, out] (rows `y_stride` apart) = x [rows, in] (rows `x_stride` apart) W^T + b, the bias
/// first and the product added to it, as LibTorch's addmm does.
template <typename T>
void dense(const BertDirectWeights::Dense& d, const T* x, int64_t rows, int64_t x_stride, T* y, int64_t y_stride) {
  const int64_t out = d.weight.size(0), in = d.weight.size(1);
  const T* bias = ptr<T>(d.bias);
  for (int64_t r = 0; r < rows; ++r) std::copy(bias, bias + out, y + r * y_stride);
  gemm<T>(true, rows, out, in, x, x_stride, ptr<T>(d.weight), in, T(1), y, y_stride);
}

/// LayerNorm of (x + residual) for each row of x [rows, H], in place; the moments in double.
/// residual(r): row r's residual, or null for none.
template <typename T, typename Residual>
void add_and_norm(const BertDirectWeights::Norm& n, T* x, int64_t rows, int64_t H, const Residual& residual) {
  const T *g = ptr<T>(n.weight), *b = ptr<T>(n.bias);
  for (int64_t r = 0; r < rows; ++r) {
    T* v = x + r * H;
    if (const T* add = residual(r))
      for (int64_t i = 0; i < H; ++i) v[i] += add[i];
    double mean = 0, var = 0;
    for (int64_t i = 0; i < H; ++i) mean += v[i];
    mean /= static_cast<double>(H);
    for (int64_t i = 0; i < H; ++i) var += (v[i] - mean) * (v[i] - mean);
    const double rstd = 1.0 / std::sqrt(var / static_cast<double>(H) + n.eps);
    for (int64_t i = 0; i < H; ++i) v[i] = static_cast<T>((v[i] - mean) * rstd) * g[i] + b[i];
  }
}

/// The softmax of each row of s [rows, n], in place (scaled by 1/root first).
template <typename T>
void softmax_rows(T* s, int64_t rows, int64_t n, T root) {
  for (int64_t r = 0; r < rows; ++r) {
    T* v = s + r * n;
    T top = -std::numeric_limits<T>::infinity();
    for (int64_t i = 0; i < n; ++i) top = std::max(top, v[i] /= root);
    T sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += (v[i] = std::exp(v[i] - top));
    const T inverse = T(1) / sum;
    for (int64_t i = 0; i < n; ++i) v[i] *= inverse;
  }
}

/// A thread's buffers, kept from batch to batch (a server's model worker allocates nothing for a
/// batch like the last), all let go after a batch that needed more than kKeepBytes in all: a server
/// keeps at most that a thread (a 2x128 BERT: batches up to about 700 tokens), not its largest batch's
/// (measured: 25-30 MB more RSS at 64 connections while every buffer of 8 MB or less was kept).
template <typename T>
struct Scratch {
  static constexpr size_t kKeepBytes = size_t{4} << 20;
  std::vector<T> x, next, qkv, context, a, h, pooled, scores;

  static T* get(std::vector<T>& v, int64_t n) {
    if (v.size() < static_cast<size_t>(n)) v.resize(static_cast<size_t>(n));
    return v.data();
  }
  void trim() {
    const std::initializer_list<std::vector<T>*> all = {&x, &next, &qkv, &context, &a, &h, &pooled, &scores};
    size_t bytes = 0;
    for (auto* v : all) bytes += v->capacity() * sizeof(T);
    if (bytes > kKeepBytes)
      for (auto* v : all) std::vector<T>().swap(*v);
  }
  static Scratch& of_this_thread() {
    thread_local Scratch scratch;
    return scratch;
  }
};

template <typename T>
class Forward {
 public:
  Forward(const BertDirectWeights& w, const Tokens& tokens)
      : w_(w),
        tok_(tokens),
        H_(w.word.size(1)),
        B_(static_cast<int64_t>(tokens.start.size())),
        N_(static_cast<int64_t>(tokens.id.size())),
        s_(Scratch<T>::of_this_thread()) {}

  torch::Tensor logits() {
    struct Trim {
      Scratch<T>& s;
      ~Trim() { s.trim(); }
    } trim{s_};
    embed();
    const bool cls = w_.pooling == "cls";
    // The rows of x: every token, or (after a last layer under a [CLS] pooler) each sample's first.
    bool firsts = false;
    for (size_t l = 0; l < w_.layers.size(); ++l) {
      firsts = cls && l + 1 == w_.layers.size();
      layer(w_.layers[l], firsts);
      s_.x.swap(s_.next);
    }
    T* pooled = Scratch<T>::get(s_.pooled, 2 * B_ * H_);
    const T* x = s_.x.data();
    for (int64_t b = 0; b < B_; ++b) {
      T* p = pooled + b * H_;
      if (cls) {
        const T* row = x + (firsts ? b : tok_.start[b]) * H_;
        std::copy(row, row + H_, p);
        continue;
      }
      std::fill(p, p + H_, T(0));
      for (int64_t r = tok_.start[b]; r < tok_.start[b] + tok_.length[b]; ++r)
        for (int64_t i = 0; i < H_; ++i) p[i] += x[r * H_ + i];
      for (int64_t i = 0; i < H_; ++i) p[i] /= static_cast<T>(tok_.length[b]);
    }
    if (cls) {  // tanh(pooler(first token)), into the buffer's second half
      T* dense_out = pooled + B_ * H_;
      dense<T>(w_.pooler, pooled, B_, H_, dense_out, H_);
      for (int64_t i = 0; i < B_ * H_; ++i) dense_out[i] = std::tanh(dense_out[i]);
      pooled = dense_out;
    }
    const int64_t C = w_.classifier.weight.size(0);
    auto out = at::empty({B_, C}, at::TensorOptions().dtype(w_.word.scalar_type()));
    dense<T>(w_.classifier, pooled, B_, H_, out.data_ptr<T>(), C);
    return out;
  }

 private:
  /// x: the word + token type + position embeddings of the real tokens (Hugging Face's order), normalised.
  void embed() {
    T* x = Scratch<T>::get(s_.x, N_ * H_);
    const T *word = ptr<T>(w_.word), *type = ptr<T>(w_.token_type), *position = ptr<T>(w_.position);
    for (int64_t r = 0; r < N_; ++r) {
      const T* a = word + tok_.id[r] * H_;
      const T* b = type + tok_.type[r] * H_;
      const T* c = position + tok_.position[r] * H_;
      T* v = x + r * H_;
      for (int64_t i = 0; i < H_; ++i) v[i] = (a[i] + b[i]) + c[i];
    }
    add_and_norm<T>(w_.embeddings_norm, x, N_, H_, [](int64_t) { return static_cast<const T*>(nullptr); });
  }

  /// One post-LayerNorm encoder layer from x [N, H] to next: [N, H], or [B, H] for the first
  /// tokens alone when `firsts_only` (every token is a key, only the first ones query and go on).
  void layer(const BertDirectWeights::Layer& l, bool firsts_only) {
    const int64_t N = N_, H = H_, H3 = 3 * H_, heads = w_.heads, d = H / heads;
    const int64_t Q = firsts_only ? B_ : N;  // the rows that go on
    const int64_t I = l.intermediate.weight.size(0);
    // Every buffer sized before any pointer into one is taken (get may move a buffer).
    T* qkv = Scratch<T>::get(s_.qkv, N * H3);
    T* context = Scratch<T>::get(s_.context, Q * H);
    T* a = Scratch<T>::get(s_.a, Q * H);
    T* h = Scratch<T>::get(s_.h, Q * I);
    T* out = Scratch<T>::get(s_.next, Q * H);
    const T* x = s_.x.data();
    dense<T>(l.qkv, x, N, H, qkv, H3);
    const T root = static_cast<T>(std::sqrt(static_cast<double>(d)));
    // Each sample attends over its own tokens.
    for (int64_t b = 0; b < B_; ++b) {
      const int64_t s = tok_.start[b], n = tok_.length[b], nq = firsts_only ? 1 : n, out_row = firsts_only ? b : s;
      T* p = Scratch<T>::get(s_.scores, nq * n);
      for (int64_t head = 0; head < heads; ++head) {
        const T* q = qkv + s * H3 + head * d;
        gemm<T>(true, nq, n, d, q, H3, q + H, H3, T(0), p, n);
        softmax_rows<T>(p, nq, n, root);
        gemm<T>(false, nq, d, n, p, n, q + 2 * H, H3, T(0), context + out_row * H + head * d, H);
      }
    }
    dense<T>(l.attention_output, context, Q, H, a, H);
    add_and_norm<T>(l.attention_norm, a, Q, H, [&](int64_t r) { return x + (firsts_only ? tok_.start[r] : r) * H; });
    dense<T>(l.intermediate, a, Q, H, h, I);
    activate(h, Q * I);
    dense<T>(l.output, h, Q, I, out, H);
    add_and_norm<T>(l.output_norm, out, Q, H, [&](int64_t r) { return a + r * H; });
  }

  /// The activation of h [n] in place: relu by a loop, the GELUs by LibTorch's kernel (one operator).
  void activate(T* h, int64_t n) const {
    if (w_.act == "relu") {
      for (int64_t i = 0; i < n; ++i) h[i] = std::max(h[i], T(0));
      return;
    }
    auto t = at::from_blob(h, {n}, at::TensorOptions().dtype(w_.word.scalar_type()));
    at::gelu_(t, w_.act == "gelu_new" ? "tanh" : "none");
  }

  const BertDirectWeights& w_;
  const Tokens& tok_;
  const int64_t H_, B_, N_;
  Scratch<T>& s_;
};

/// Whether the weights are this path's: float32 or float64 throughout, contiguous, on the CPU.
bool weights_apply(const BertDirectWeights& w) {
  const auto dtype = w.word.scalar_type();
  if (dtype != torch::kFloat && dtype != torch::kDouble) return false;
  auto ok = [&](const torch::Tensor& t) {
    return t.defined() && t.scalar_type() == dtype && t.is_cpu() && t.is_contiguous();
  };
  auto dense_ok = [&](const BertDirectWeights::Dense& d) { return ok(d.weight) && ok(d.bias); };
  auto norm_ok = [&](const BertDirectWeights::Norm& n) { return ok(n.weight) && ok(n.bias); };
  if (!ok(w.word) || !ok(w.position) || !ok(w.token_type) || !norm_ok(w.embeddings_norm) || !dense_ok(w.classifier) ||
      (w.pooling == "cls" && !dense_ok(w.pooler)))
    return false;
  if (w.heads <= 0 || w.word.size(1) % w.heads != 0) return false;
  return std::all_of(w.layers.begin(), w.layers.end(), [&](const BertDirectWeights::Layer& l) {
    return dense_ok(l.qkv) && l.qkv.weight.size(0) == 3 * w.word.size(1) && dense_ok(l.attention_output) &&
           dense_ok(l.intermediate) && dense_ok(l.output) && norm_ok(l.attention_norm) && norm_ok(l.output_norm);
  });
}

}  // namespace

bool bert_direct_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("LTK_BERT_DIRECT");
    return !(v && std::string(v) == "0");
  }();
  return enabled;
}

torch::Tensor try_bert_direct(const BertDirectWeights& w, const Batch& batch, int64_t max_tokens) {
  if (max_tokens <= 0 || !plain_inference() || !blas_has_gemm() || !weights_apply(w)) return {};
  if (!batch.ids.defined() || !batch.mask.defined() || !batch.ids.is_cpu() || !batch.mask.is_cpu() ||
      batch.ids.dim() != 2 || batch.ids.size(0) == 0 || batch.ids.size(1) == 0 ||
      batch.ids.scalar_type() != torch::kLong || batch.mask.scalar_type() != torch::kBool ||
      batch.mask.sizes() != batch.ids.sizes() ||
      (batch.token_types.defined() && (!batch.token_types.is_cpu() || batch.token_types.sizes() != batch.ids.sizes() ||
                                       batch.token_types.scalar_type() != torch::kLong)))
    return {};
  Tokens tokens;
  if (!real_tokens(batch, w, max_tokens, tokens)) return {};
  if (w.word.scalar_type() == torch::kDouble) return Forward<double>(w, tokens).logits();
  return Forward<float>(w, tokens).logits();
}

}  // namespace ltk
