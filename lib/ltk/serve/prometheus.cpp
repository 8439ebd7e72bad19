#include "ltk/serve/prometheus.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace ltk::serve {

Histogram::Histogram(std::vector<double> upper_bounds) : bounds(std::move(upper_bounds)), counts(bounds.size() + 1, 0) {}

void Histogram::observe(double value) {
  size_t i = static_cast<size_t>(std::lower_bound(bounds.begin(), bounds.end(), value) - bounds.begin());
  ++counts[i];
  sum += value;
  ++count;
}

namespace {

std::vector<double> powers_of_two_up_to(int64_t max) {
  std::vector<double> b;
  for (int64_t v = 1; v < max; v *= 2) b.push_back(static_cast<double>(v));
  b.push_back(static_cast<double>(max));
  return b;
}

const std::vector<double> kSeconds = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

// A label value with \ " and newline escaped, as the format asks.
std::string label_value(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  std::ostringstream s;
  s.precision(12);
  s << v;
  return s.str();
}

void render_histogram(std::ostringstream& out, const std::string& name, const std::string& labels, const Histogram& h) {
  uint64_t cumulative = 0;
  const std::string sep = labels.empty() ? "" : labels + ",";
  for (size_t i = 0; i <= h.bounds.size(); ++i) {
    cumulative += h.counts[i];
    out << name << "_bucket{" << sep << "le=\"" << (i < h.bounds.size() ? number(h.bounds[i]) : "+Inf") << "\"} "
        << cumulative << "\n";
  }
  const std::string braces = labels.empty() ? "" : "{" + labels + "}";
  out << name << "_sum" << braces << " " << number(h.sum) << "\n" << name << "_count" << braces << " " << h.count << "\n";
}

}  // namespace

ServeMetrics::ServeMetrics(int64_t max_batch)
    : batch_texts_(powers_of_two_up_to(std::max<int64_t>(1, max_batch))), batch_seconds_(kSeconds) {}

std::string ServeMetrics::endpoint(const std::string& path) {
  static const char* fixed[] = {"/v1/predict", "/v1/model", "/v2", "/v2/health/live", "/v2/health/ready",
                                "/metrics", "/admin/reload"};
  for (const char* f : fixed)
    if (path == f) return f;
  const std::string models = "/v2/models/";
  if (path.compare(0, models.size(), models) == 0) {
    std::string rest = path.substr(models.size());
    size_t slash = rest.find('/');
    if (slash == std::string::npos) return "/v2/models/{name}";
    std::string tail = rest.substr(slash);
    // /v2/models/NAME/versions/V/... is the same route with a version
    size_t versions = tail.find("/versions/");
    if (versions == 0) {
      size_t next = tail.find('/', 10);
      tail = next == std::string::npos ? "" : tail.substr(next);
    }
    if (tail.empty()) return "/v2/models/{name}";
    if (tail == "/ready" || tail == "/infer") return "/v2/models/{name}" + tail;
  }
  return "other";
}

void ServeMetrics::response(const std::string& path, int status) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++responses_[{endpoint(path), status}];
}

void ServeMetrics::latency(const std::string& path, double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto [it, added] = latency_.try_emplace(endpoint(path), kSeconds);
  it->second.observe(seconds);
}

void ServeMetrics::batch(int64_t texts, double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  batch_texts_.observe(static_cast<double>(texts));
  batch_seconds_.observe(seconds);
}

void ServeMetrics::queue_depth(int64_t texts) {
  std::lock_guard<std::mutex> lock(mutex_);
  queue_depth_ = texts;
}

void ServeMetrics::texts(int64_t answered, int64_t refused) {
  std::lock_guard<std::mutex> lock(mutex_);
  texts_answered_ += static_cast<uint64_t>(answered);
  texts_refused_ += static_cast<uint64_t>(refused);
}

void ServeMetrics::model(int64_t version, const std::string& name, const std::string& run, const std::string& checkpoint) {
  std::lock_guard<std::mutex> lock(mutex_);
  version_ = version;
  name_ = name;
  run_ = run;
  checkpoint_ = checkpoint;
}

void ServeMetrics::reload(bool ok) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++(ok ? reloads_ok_ : reloads_failed_);
}

std::string ServeMetrics::render() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::ostringstream out;
  out << "# HELP ltk_requests_total HTTP responses by endpoint and status code.\n"
      << "# TYPE ltk_requests_total counter\n";
  for (const auto& [key, n] : responses_)
    out << "ltk_requests_total{endpoint=\"" << label_value(key.first) << "\",code=\"" << key.second << "\"} " << n << "\n";
  out << "# HELP ltk_request_duration_seconds Time from a request's body being read to its answer, by endpoint.\n"
      << "# TYPE ltk_request_duration_seconds histogram\n";
  for (const auto& [ep, h] : latency_)
    render_histogram(out, "ltk_request_duration_seconds", "endpoint=\"" + label_value(ep) + "\"", h);
  out << "# HELP ltk_batch_texts Texts per model batch (dynamic batching).\n# TYPE ltk_batch_texts histogram\n";
  render_histogram(out, "ltk_batch_texts", "", batch_texts_);
  out << "# HELP ltk_batch_duration_seconds Time the model took per batch.\n"
      << "# TYPE ltk_batch_duration_seconds histogram\n";
  render_histogram(out, "ltk_batch_duration_seconds", "", batch_seconds_);
  out << "# HELP ltk_queue_texts Texts waiting for a batch.\n# TYPE ltk_queue_texts gauge\n"
      << "ltk_queue_texts " << queue_depth_ << "\n"
      << "# HELP ltk_texts_total Texts answered by the model, and texts refused (queue full).\n"
      << "# TYPE ltk_texts_total counter\n"
      << "ltk_texts_total{result=\"answered\"} " << texts_answered_ << "\n"
      << "ltk_texts_total{result=\"refused\"} " << texts_refused_ << "\n"
      << "# HELP ltk_reloads_total Model reloads by result.\n# TYPE ltk_reloads_total counter\n"
      << "ltk_reloads_total{result=\"ok\"} " << reloads_ok_ << "\n"
      << "ltk_reloads_total{result=\"failed\"} " << reloads_failed_ << "\n"
      << "# HELP ltk_model_version The version of the model being served (1 at start, +1 per reload).\n"
      << "# TYPE ltk_model_version gauge\n"
      << "ltk_model_version " << version_ << "\n"
      << "# HELP ltk_model_info The model being served.\n# TYPE ltk_model_info gauge\n"
      << "ltk_model_info{name=\"" << label_value(name_) << "\",version=\"" << version_ << "\",run=\""
      << label_value(run_) << "\",checkpoint=\"" << label_value(checkpoint_) << "\"} 1\n";
  return out.str();
}

std::string render_connections(const ConnectionStats& c) {
  std::ostringstream out;
  out << "# HELP ltk_http_connections Connections open now.\n# TYPE ltk_http_connections gauge\n"
      << "ltk_http_connections " << c.open << "\n"
      << "# HELP ltk_http_connections_max The cap on open connections (--max-connections, under the open-files "
         "limit).\n# TYPE ltk_http_connections_max gauge\n"
      << "ltk_http_connections_max " << c.max_connections << "\n"
      << "# HELP ltk_http_connections_accepted_total Connections accepted, refused ones included.\n"
      << "# TYPE ltk_http_connections_accepted_total counter\n"
      << "ltk_http_connections_accepted_total " << c.accepted << "\n"
      << "# HELP ltk_http_connections_refused_total Connections answered 503 and closed at once, by the cap they "
         "passed.\n# TYPE ltk_http_connections_refused_total counter\n"
      << "ltk_http_connections_refused_total{reason=\"total\"} " << c.refused_total << "\n"
      << "ltk_http_connections_refused_total{reason=\"per_client\"} " << c.refused_per_client << "\n"
      << "# HELP ltk_http_timeouts_total Connections cut at a deadline, by phase (header, body: answered 408; "
         "idle, write: closed).\n# TYPE ltk_http_timeouts_total counter\n"
      << "ltk_http_timeouts_total{phase=\"header\"} " << c.timeouts_header << "\n"
      << "ltk_http_timeouts_total{phase=\"body\"} " << c.timeouts_body << "\n"
      << "ltk_http_timeouts_total{phase=\"idle\"} " << c.timeouts_idle << "\n"
      << "ltk_http_timeouts_total{phase=\"write\"} " << c.timeouts_write << "\n";
  return out.str();
}

}  // namespace ltk::serve
