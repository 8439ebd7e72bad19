#include "ltk/serve/requests.h"

#include <algorithm>

#include "ltk/data/utf8.h"

namespace ltk::serve {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;
using infer::TextInput;

namespace {

// An invalid UTF-8 byte in a request body becomes this noncharacter (U+FDD0, "for internal use")
// so that the JSON still parses and the text that held it is answered with an error in place.
const std::string kInvalidByte = "\xEF\xB7\x90";

std::string with_invalid_bytes_marked(const std::string& body) {
  std::string out;
  std::string_view rest(body);
  for (;;) {
    size_t bad = utf8::find_invalid(rest);
    if (bad == std::string::npos) break;
    out.append(rest.substr(0, bad)).append(kInvalidByte);
    rest.remove_prefix(bad + 1);
  }
  out.append(rest);
  return out;
}

// JSON nests at most this deep in a request: copying, printing and walking a value recurse, so a
// small body of nested brackets must not reach them.
constexpr int kMaxDepth = 32;

// The deepest nesting of arrays and objects in `body`, outside strings (stops counting past kMaxDepth).
int nesting_depth(const std::string& body) {
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < body.size() && deepest <= kMaxDepth; ++i) {
    const char c = body[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

const char* type_name(const json& j) {
  return j.type_name();
}

}  // namespace

HttpResponse json_response(int status, const ojson& body) {
  HttpResponse r;
  r.status = status;
  r.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

HttpResponse error_response(int status, const std::string& message) {
  return json_response(status, {{"error", message}});
}

json parse_body(const std::string& body, bool& marked) {
  if (nesting_depth(body) > kMaxDepth)
    throw FieldError{400, "invalid JSON: nested deeper than " + std::to_string(kMaxDepth) + " levels"};
  marked = utf8::find_invalid(body) != std::string::npos;
  try {
    return json::parse(marked ? with_invalid_bytes_marked(body) : body);
  } catch (const json::exception& e) {  // parse errors, and numbers out of range (1e999)
    std::string what = e.what();
    size_t tag = what.find("] ");
    throw FieldError{400, "invalid JSON: " + (tag == std::string::npos ? what : what.substr(tag + 2))};
  }
}

// A value for an error message, cut short.
std::string shown(const json& j) {
  std::string s = j.dump(-1, ' ', false, json::error_handler_t::replace);
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

/// The text of a request field, as an input: an invalid byte (marked, when the body had one) is an
/// error of that text.
TextInput input_of(const std::string& text, const std::string& pair, bool pairs, bool marked) {
  size_t bad = marked ? text.find(kInvalidByte) : std::string::npos;
  if (bad != std::string::npos) return TextInput{"", "", "invalid UTF-8 at byte " + std::to_string(bad)};
  if (pairs && marked) {
    size_t bad_pair = pair.find(kInvalidByte);
    if (bad_pair != std::string::npos)
      return TextInput{"", "", "invalid UTF-8 at byte " + std::to_string(bad_pair) + " (the second text of the pair)"};
  }
  return infer::make_input(text, pair, pairs);
}

V1Request parse_v1_request(const std::string& request_body, const infer::Predictor& predictor) {
  V1Request r;
  bool marked = false;
  const json body = parse_body(request_body, marked);
  if (!body.is_object())
    throw FieldError{
        422, std::string("the body must be a JSON object with \"texts\" or \"instances\", got ") + type_name(body)};
  for (const auto& [key, value] : body.items())
    if (key != "texts" && key != "instances" && key != "top_k")
      throw FieldError{422, "unknown field '" + key + "' (known: texts, instances, top_k)"};
  if (body.contains("texts") == body.contains("instances"))
    throw FieldError{422, "give either \"texts\": [text, ...] or \"instances\": [{\"text\": ..., \"id\": ...}, ...]"};
  if (body.contains("top_k")) {
    const auto& k = body["top_k"];
    if (!k.is_number_integer() || k.get<int64_t>() < 0)
      throw FieldError{
          422, std::string("top_k: expected an integer >= 0, got ") + (k.is_number() ? shown(k) : type_name(k))};
    r.top_k = k.get<int64_t>();
  }
  if (body.contains("texts")) {
    const auto& texts = body["texts"];
    if (!texts.is_array())
      throw FieldError{422, std::string("texts: expected an array of strings, got ") + type_name(texts)};
    if (predictor.pairs())
      throw FieldError{422, "this model reads sentence pairs: send \"instances\": [{\"text\": ..., \"" +
                                predictor.pair_field() + "\": ...}]"};
    for (size_t i = 0; i < texts.size(); ++i) {
      if (!texts[i].is_string())
        throw FieldError{422, "texts[" + std::to_string(i) + "]: expected a string, got " + type_name(texts[i])};
      r.inputs.push_back(input_of(texts[i].get_ref<const std::string&>(), "", false, marked));
    }
  } else {
    const auto& instances = body["instances"];
    if (!instances.is_array())
      throw FieldError{422, std::string("instances: expected an array of objects, got ") + type_name(instances)};
    for (size_t i = 0; i < instances.size(); ++i) {
      const auto& in = instances[i];
      const std::string where = "instances[" + std::to_string(i) + "]";
      if (!in.is_object()) throw FieldError{422, where + ": expected an object, got " + type_name(in)};
      if (!in.contains("text") || !in["text"].is_string())
        throw FieldError{
            422, where + ".text: expected a string, got " + (in.contains("text") ? type_name(in["text"]) : "nothing")};
      std::string pair;
      if (predictor.pairs()) {
        const std::string& f = predictor.pair_field();
        if (!in.contains(f) || !in[f].is_string())
          throw FieldError{422, where + "." + f + ": expected a string (this model reads sentence pairs), got " +
                                    (in.contains(f) ? type_name(in[f]) : "nothing")};
        pair = in[f].get<std::string>();
      }
      r.ids.push_back(in.contains("id") ? in["id"] : json());
      r.inputs.push_back(input_of(in["text"].get_ref<const std::string&>(), pair, predictor.pairs(), marked));
    }
  }
  return r;
}

ojson v1_predictions(const V1Request& request, std::vector<ojson>& answers) {
  const auto& inputs = request.inputs;
  const auto& ids = request.ids;
  ojson predictions = ojson::array();
  size_t row = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    ojson j;
    if (!ids.empty() && !ids[i].is_null()) j["id"] = ids[i];
    if (!inputs[i].error.empty()) {
      j["error"] = inputs[i].error;
    } else {
      for (auto& [k, v] : answers[row].items()) j[k] = std::move(v);
      ++row;
    }
    predictions.push_back(std::move(j));
  }
  return predictions;
}

}  // namespace ltk::serve
