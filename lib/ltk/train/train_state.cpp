// TrainState: the loop position and best-tracking state a checkpoint keeps, as JSON.
#include "ltk/train/trainer.h"

#include <cstdint>
#include <string>
#include <type_traits>

#include "ltk/core/error.h"


namespace ltk {

nlohmann::json TrainState::to_json() const {
  nlohmann::json kept_json = nlohmann::json::array();
  for (const auto& [v, s] : kept) kept_json.push_back({v, s});
  return {{"epoch", epoch},
          {"batch_pos", batch_pos},
          {"step", step},
          {"samples_seen", samples_seen},
          {"window_loss", window_loss},
          {"window_steps", window_steps},
          {"epoch_loss", epoch_loss},
          {"epoch_steps", epoch_steps},
          {"plateau_scale", plateau_scale},
          {"bad_evals", bad_evals},
          {"has_best", has_best},
          {"best_value", has_best ? best_value : 0.0},
          {"best_step", best_step},
          {"best_epoch", best_epoch},
          {"kept", kept_json},
          {"nonfinite_skipped", nonfinite_skipped},
          {"early_stopped", early_stopped},
          {"epoch_closed", epoch_closed},
          {"last_epoch_loss", last_epoch_loss},
          {"metrics_bytes", metrics_bytes},
          {"validation_pending", validation_pending},
          {"world", world},
          {"loss_scale", loss_scale},
          {"loss_scale_growth", loss_scale_growth},
          {"overflow_skipped", overflow_skipped}};
}

namespace {

// A field of the saved state, of the type it was written with: a float where an integer belongs
// (3e116 as an epoch) is refused, never converted (which would be undefined behaviour).
template <typename T>
T field(const nlohmann::json& j, const char* key) {
  if (!j.is_object() || !j.contains(key)) throw CheckpointError(std::string("state.") + key + " is missing");
  const nlohmann::json& v = j[key];
  bool ok;
  if constexpr (std::is_same_v<T, bool>) ok = v.is_boolean();
  else if constexpr (std::is_unsigned_v<T>) ok = v.is_number_unsigned();
  else if constexpr (std::is_integral_v<T>) ok = v.is_number_integer() && !(v.is_number_unsigned() && v.get<uint64_t>() > INT64_MAX);
  else ok = v.is_number();
  if (!ok) throw CheckpointError(std::string("state.") + key + " has the wrong type (" + v.type_name() + ")");
  return v.get<T>();
}

}  // namespace

TrainState TrainState::from_json(const nlohmann::json& j) {
  TrainState s;
  s.epoch = field<int64_t>(j, "epoch");
  s.batch_pos = field<int64_t>(j, "batch_pos");
  s.step = field<int64_t>(j, "step");
  s.samples_seen = field<int64_t>(j, "samples_seen");
  s.window_loss = field<double>(j, "window_loss");
  s.window_steps = field<int64_t>(j, "window_steps");
  s.epoch_loss = field<double>(j, "epoch_loss");
  s.epoch_steps = field<int64_t>(j, "epoch_steps");
  s.plateau_scale = field<double>(j, "plateau_scale");
  s.bad_evals = field<int64_t>(j, "bad_evals");
  s.has_best = field<bool>(j, "has_best");
  s.best_value = field<double>(j, "best_value");
  s.best_step = field<int64_t>(j, "best_step");
  s.best_epoch = field<int64_t>(j, "best_epoch");
  if (!j.at("kept").is_array()) throw CheckpointError("state.kept is not a list");
  for (const auto& k : j.at("kept")) {
    if (!k.is_array() || k.size() != 2 || !k[0].is_number() || !k[1].is_number_integer())
      throw CheckpointError("state.kept holds an entry that is not [value, step]");
    s.kept.emplace_back(k[0].get<double>(), k[1].get<int64_t>());
  }
  s.nonfinite_skipped = field<int64_t>(j, "nonfinite_skipped");
  s.early_stopped = field<bool>(j, "early_stopped");
  s.epoch_closed = field<bool>(j, "epoch_closed");
  s.last_epoch_loss = field<double>(j, "last_epoch_loss");
  s.metrics_bytes = field<uint64_t>(j, "metrics_bytes");
  // Absent in runs made before they existed.
  s.validation_pending = j.contains("validation_pending") ? field<bool>(j, "validation_pending") : false;
  s.world = j.contains("world") ? field<int64_t>(j, "world") : 1;
  s.loss_scale = j.contains("loss_scale") ? field<double>(j, "loss_scale") : 0.0;
  s.loss_scale_growth = j.contains("loss_scale_growth") ? field<int64_t>(j, "loss_scale_growth") : 0;
  s.overflow_skipped = j.contains("overflow_skipped") ? field<int64_t>(j, "overflow_skipped") : 0;
  return s;
}

}  // namespace ltk
