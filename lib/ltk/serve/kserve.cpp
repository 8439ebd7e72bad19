#include "ltk/serve/kserve.h"

#include <algorithm>
#include <functional>

#include "ltk/serve/requests.h"

namespace ltk::serve {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;
using infer::TextInput;

namespace {

const char* type_name(const json& j) {
  return j.type_name();
}

// The texts of an input tensor, flattened (data may be nested by its shape).
std::vector<std::string> texts_of(const json& tensor, const std::string& where) {
  if (!tensor.is_object()) throw FieldError{400, where + ": expected an object"};
  if (!tensor.contains("datatype") || tensor["datatype"] != "BYTES")
    throw FieldError{400, where + ".datatype: expected \"BYTES\" (texts), got " +
                              (tensor.contains("datatype") ? shown(tensor["datatype"]) : "nothing")};
  if (!tensor.contains("data") || !tensor["data"].is_array()) throw FieldError{400, where + ".data: expected an array"};
  std::vector<std::string> out;
  std::function<void(const json&)> walk = [&](const json& j) {
    if (j.is_array()) {
      for (const auto& e : j) walk(e);
    } else if (j.is_string()) {
      out.push_back(j.get<std::string>());
    } else {
      throw FieldError{400, where + ".data: expected strings, got " + std::string(type_name(j))};
    }
  };
  walk(tensor["data"]);
  if (tensor.contains("shape")) {
    const auto& shape = tensor["shape"];
    int64_t n = 1;
    bool ok = shape.is_array() && !shape.empty();
    for (const auto& d : shape) {
      ok = ok && d.is_number_integer() && d.get<int64_t>() >= 0 && d.get<int64_t>() <= (int64_t{1} << 30);
      if (ok) n = std::min<int64_t>(n * d.get<int64_t>(), int64_t{1} << 40);  // no overflow
    }
    if (!ok || n != static_cast<int64_t>(out.size()))
      throw FieldError{400, where + ".shape " + shown(shape) + " does not hold the " + std::to_string(out.size()) +
                                " strings of its data"};
  }
  return out;
}

}  // namespace

V2Request parse_v2_request(const std::string& request_body, const infer::Predictor& predictor) {
  if (predictor.masked_lm())
    throw FieldError{400, "a masked-LM model answers on POST /v1/predict (its answers are not tensors)"};
  bool marked = false;
  json body;
  try {
    body = parse_body(request_body, marked);
  } catch (const FieldError& e) {
    throw FieldError{400, e.message};  // the protocol answers every bad request with 400
  }
  if (!body.is_object() || !body.contains("inputs") || !body["inputs"].is_array())
    throw FieldError{
        400, "inputs: expected an array of input tensors ({\"name\", \"shape\", \"datatype\": \"BYTES\", \"data\"})"};
  const auto& in = body["inputs"];
  const std::string pair_name = predictor.pair_field();
  std::vector<std::string> texts, pairs;
  bool have_text = false;
  for (size_t i = 0; i < in.size(); ++i) {
    const std::string where = "inputs[" + std::to_string(i) + "]";
    std::string name = in[i].is_object() && in[i].contains("name") && in[i]["name"].is_string()
                           ? in[i]["name"].get<std::string>()
                           : "";
    if (predictor.pairs() && name == pair_name) {
      pairs = texts_of(in[i], where);
    } else if (!have_text && (name == "text" || in.size() == 1)) {
      texts = texts_of(in[i], where);
      have_text = true;
    } else {
      throw FieldError{400, where + ": unknown input '" + name + "' (this model takes \"text\"" +
                                (predictor.pairs() ? " and \"" + pair_name + "\"" : std::string()) + ")"};
    }
  }
  if (!have_text) throw FieldError{400, "inputs: no input named \"text\""};
  if (predictor.pairs() && pairs.size() != texts.size())
    throw FieldError{
        400, "inputs: \"" + pair_name + "\" must hold one text per text (" + std::to_string(texts.size()) + ")"};
  V2Request r;
  auto& inputs = r.inputs;
  for (size_t i = 0; i < texts.size(); ++i) {
    inputs.push_back(input_of(texts[i], predictor.pairs() ? pairs[i] : "", predictor.pairs(), marked));
    if (!inputs.back().error.empty())
      throw FieldError{400, "inputs[text].data[" + std::to_string(i) + "]: " + inputs.back().error};
  }
  if (body.contains("outputs") && body["outputs"].is_array())
    for (const auto& o : body["outputs"])
      if (o.is_object() && o.contains("name") && o["name"].is_string()) r.outputs.insert(o["name"].get<std::string>());
  if (body.contains("id")) r.id = body["id"];
  return r;
}

ojson v2_outputs(const std::vector<ojson>& answers, const std::set<std::string>& wanted) {
  // Each field of the answers becomes an output tensor: strings BYTES, numbers FP32, a list of
  // labels BYTES (joined by ","), the scores object an FP32 [N, C] tensor.
  const int64_t N = static_cast<int64_t>(answers.size());
  ojson outputs = ojson::array();
  std::set<std::string> available;
  if (N > 0) {
    for (auto& [key, first] : answers[0].items()) {
      available.insert(key);
      if (!wanted.empty() && !wanted.count(key)) continue;
      ojson tensor{{"name", key}};
      ojson data = ojson::array();
      if (first.is_object()) {
        const int64_t C = static_cast<int64_t>(first.size());
        ojson names = ojson::array();
        for (auto& [label, v] : first.items()) names.push_back(label);
        for (const auto& a : answers)
          for (auto& [label, v] : a.at(key).items()) data.push_back(v);
        tensor["datatype"] = "FP32";
        tensor["shape"] = {N, C};
        tensor["parameters"] = {{"labels", names}};
      } else if (first.is_array()) {
        for (const auto& a : answers) {
          std::string joined;
          for (const auto& l : a.at(key)) joined += (joined.empty() ? "" : ",") + l.get<std::string>();
          data.push_back(joined);
        }
        tensor["datatype"] = "BYTES";
        tensor["shape"] = {N};
      } else {
        for (const auto& a : answers) data.push_back(a.at(key));
        tensor["datatype"] = first.is_string() ? "BYTES" : "FP32";
        tensor["shape"] = {N};
      }
      tensor["data"] = std::move(data);
      outputs.push_back(std::move(tensor));
    }
  }
  for (const auto& w : wanted)
    if (N > 0 && !available.count(w)) {
      std::string names;
      for (const auto& a : available) names += (names.empty() ? "" : ", ") + a;
      throw FieldError{400, "outputs: unknown output '" + w + "' (this model has: " + names + ")"};
    }
  return outputs;
}

ojson v2_model_metadata(const infer::Predictor& predictor, const std::string& name, int64_t version,
                        const std::string& run_dir, const std::string& checkpoint) {
  const auto& run = predictor.run();
  ojson inputs = ojson::array({{{"name", "text"}, {"datatype", "BYTES"}, {"shape", {-1}}}});
  if (predictor.pairs()) inputs.push_back({{"name", predictor.pair_field()}, {"datatype", "BYTES"}, {"shape", {-1}}});
  ojson outputs = ojson::array();
  const std::string& task = run.config.task.type;
  const int64_t C = run.labels.size();
  if (task == "multiclass" || task == "binary") {
    outputs.push_back({{"name", "label"}, {"datatype", "BYTES"}, {"shape", {-1}}});
    outputs.push_back({{"name", "score"}, {"datatype", "FP32"}, {"shape", {-1}}});
    outputs.push_back({{"name", "scores"}, {"datatype", "FP32"}, {"shape", {-1, C}}});
  } else if (task == "multilabel") {
    outputs.push_back({{"name", "labels"}, {"datatype", "BYTES"}, {"shape", {-1}}});
    outputs.push_back({{"name", "scores"}, {"datatype", "FP32"}, {"shape", {-1, C}}});
  } else if (task == "regression") {
    outputs.push_back({{"name", "value"}, {"datatype", "FP32"}, {"shape", {-1}}});
  }
  ojson j{{"name", name},
          {"versions", {std::to_string(version)}},
          {"platform", "ltk_libtorch"},
          {"inputs", inputs},
          {"outputs", outputs}};
  j["parameters"] = {{"task", task}, {"labels", run.labels.names()}, {"run", run_dir}, {"checkpoint", checkpoint}};
  return j;
}

}  // namespace ltk::serve
