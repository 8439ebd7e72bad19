// Reading and writing the config's sections (sections.cpp). Internal to lib/ltk/config.
#pragma once

#include <nlohmann/json.hpp>

#include "ltk/config/config.h"
#include "ltk/config/json_reader.h"

namespace ltk::config_detail {

/// The top-level keys with a field table (device, threads, log_level).
void read_top(JsonReader& r, Config& c);
void read_data(JsonReader r, DataConfig& d);
void read_task(JsonReader r, TaskConfig& t);
void read_optimizer(JsonReader r, OptimizerConfig& o);
void read_scheduler(JsonReader r, SchedulerConfig& s);
void read_trainer(JsonReader r, TrainerConfig& t);
/// Checks across data keys, once the model has completed the config (ModelSchema::complete).
void check_data(const DataConfig& d);

/// The whole resolved config as JSON, from the same field tables.
nlohmann::json write_sections(const Config& c);

}  // namespace ltk::config_detail
