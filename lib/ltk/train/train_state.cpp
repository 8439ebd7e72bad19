// TrainState: the loop position and best-tracking state a checkpoint keeps, as JSON.
#include "ltk/train/trainer.h"


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
          {"world", world}};
}

TrainState TrainState::from_json(const nlohmann::json& j) {
  TrainState s;
  s.epoch = j.at("epoch");
  s.batch_pos = j.at("batch_pos");
  s.step = j.at("step");
  s.samples_seen = j.at("samples_seen");
  s.window_loss = j.at("window_loss");
  s.window_steps = j.at("window_steps");
  s.epoch_loss = j.at("epoch_loss");
  s.epoch_steps = j.at("epoch_steps");
  s.plateau_scale = j.at("plateau_scale");
  s.bad_evals = j.at("bad_evals");
  s.has_best = j.at("has_best");
  s.best_value = j.at("best_value");
  s.best_step = j.at("best_step");
  s.best_epoch = j.at("best_epoch");
  for (const auto& k : j.at("kept")) s.kept.emplace_back(k.at(0).get<double>(), k.at(1).get<int64_t>());
  s.nonfinite_skipped = j.at("nonfinite_skipped");
  s.early_stopped = j.at("early_stopped");
  s.epoch_closed = j.at("epoch_closed");
  s.last_epoch_loss = j.at("last_epoch_loss");
  s.metrics_bytes = j.at("metrics_bytes");
  s.validation_pending = j.value("validation_pending", false);  // absent in runs made before it existed
  s.world = j.value("world", int64_t{1});
  return s;
}

}  // namespace ltk
