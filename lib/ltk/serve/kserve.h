// The KServe v2 (Open Inference Protocol) encoding of ltk's answers: texts come as BYTES input
// tensors, answers go as output tensors. Functions of bodies and answers only, so that a unit test
// can call them without a server; routing is in server.cpp.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "ltk/infer/predictor.h"

namespace ltk::serve {

/// POST /v2/models/NAME/infer's body: the "text" input (and the pair field's for a pairs model),
/// the outputs asked for, the request's id. Every bad request is FieldError 400, naming the field.
struct V2Request {
  std::vector<infer::TextInput> inputs;
  std::set<std::string> outputs;     ///< asked for by name; empty = all
  std::optional<nlohmann::json> id;  ///< echoed in the response
};
V2Request parse_v2_request(const std::string& body, const infer::Predictor& predictor);

/// The output tensors of `answers` (one per input, as Predictor::answer makes them): strings as
/// BYTES, numbers FP32, a list of labels BYTES joined by ",", the scores object an FP32 [N, C]
/// tensor with its labels. FieldError 400 for an output asked for that the model has not.
nlohmann::ordered_json v2_outputs(const std::vector<nlohmann::ordered_json>& answers,
                                  const std::set<std::string>& wanted);

/// GET /v2/models/NAME: the model's metadata (its inputs, outputs by task, labels, run).
nlohmann::ordered_json v2_model_metadata(const infer::Predictor& predictor, const std::string& name, int64_t version,
                                         const std::string& run_dir, const std::string& checkpoint);

}  // namespace ltk::serve
