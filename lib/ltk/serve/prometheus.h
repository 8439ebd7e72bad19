// The server's figures in Prometheus' text exposition format (version 0.0.4), for GET /metrics.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "ltk/serve/http.h"

namespace ltk::serve {

/// A Prometheus histogram: counts per upper bound (rendered cumulative), their sum and count.
struct Histogram {
  std::vector<double> bounds;
  std::vector<uint64_t> counts;  ///< one per bound, plus +Inf
  double sum = 0;
  uint64_t count = 0;
  explicit Histogram(std::vector<double> upper_bounds = {});
  void observe(double value);
};

/// Thread-safe counters, gauges and histograms of the server.
class ServeMetrics {
 public:
  explicit ServeMetrics(int64_t max_batch);
  /// A response: counted by endpoint (a route template, never a raw path) and status.
  void response(const std::string& path, int status);
  /// The time a handled request took, from its body being read to its answer being ready.
  void latency(const std::string& path, double seconds);
  void batch(int64_t texts, double seconds);
  void queue_depth(int64_t texts);
  void texts(int64_t answered, int64_t refused);
  void model(int64_t version, const std::string& name, const std::string& run, const std::string& checkpoint);
  void reload(bool ok);
  std::string render() const;

  /// The route template of a path: "/v1/predict", "/v2/models/{name}/infer", ..., else "other".
  static std::string endpoint(const std::string& path);

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, uint64_t> responses_;
  std::map<std::string, Histogram> latency_;
  Histogram batch_texts_, batch_seconds_;
  int64_t queue_depth_ = 0;
  uint64_t texts_answered_ = 0, texts_refused_ = 0, reloads_ok_ = 0, reloads_failed_ = 0;
  int64_t version_ = 0;
  std::string name_, run_, checkpoint_;
};

/// The HTTP server's connection figures (ltk_http_*).
std::string render_connections(const ConnectionStats& stats);

}  // namespace ltk::serve
