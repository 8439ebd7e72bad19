// What the sweep's runner, leaderboard and status share: the trial files and their metrics.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <utility>
#include <vector>

#include "ltk/sweep/sweep.h"

namespace ltk::sweep::detail {

/// DIR/trials/NAME + suffix ("" is the trial's run directory).
std::string trial_path(const Plan& plan, const Trial& t, const std::string& suffix);
TrialState read_state(const Plan& plan, const Trial& t);
void write_state(const Plan& plan, const Trial& t, const TrialState& s);
/// "key=value key=value" of an assignment.
std::string describe(const nlohmann::json& assignment);
/// (epoch, value of `metric`) of each validation in the run's metrics.jsonl.
std::vector<std::pair<int64_t, double>> valid_history(const std::string& run_dir, const std::string& metric);
/// Whether `pid` is a live process training the trial `trial_name` (not an exited or recycled pid).
bool trainer_alive(int64_t pid, const std::string& trial_name);
/// The best value up to `until_epoch` (0: all); NaN when none.
double best_valid(const std::vector<std::pair<int64_t, double>>& history, int64_t until_epoch, bool higher_better);

}  // namespace ltk::sweep::detail
