// What a request body means to ltk-serve, apart from routing: the JSON checks every endpoint
// shares, and the /v1/predict request and response. Functions of bodies and answers only, so that a
// unit test can call them without a server.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "ltk/infer/predictor.h"
#include "ltk/serve/http.h"

namespace ltk::serve {

/// A request field that is wrong: the status and the message naming the field.
struct FieldError {
  int status;
  std::string message;
};

HttpResponse json_response(int status, const nlohmann::ordered_json& body);
HttpResponse error_response(int status, const std::string& message);

/// Parses a request body. JSON nested deeper than 32 levels and invalid JSON are FieldError 400;
/// an invalid UTF-8 byte is marked (`marked` set) so that the text holding it is answered with an
/// error in place while the others are answered.
nlohmann::json parse_body(const std::string& body, bool& marked);
/// A value for an error message, cut short.
std::string shown(const nlohmann::json& j);
/// The text of a request field as an input: an invalid byte (marked, when the body had one) is an
/// error of that text.
infer::TextInput input_of(const std::string& text, const std::string& pair, bool pairs, bool marked);

/// POST /v1/predict's body: {"texts": [...]} or {"instances": [{"text", "id", pair field}]}, and
/// "top_k". Throws FieldError 400/422 naming the field at fault.
struct V1Request {
  std::vector<infer::TextInput> inputs;  ///< one per text, in order (those with an error answered in place)
  std::vector<nlohmann::json> ids;       ///< instances' ids (null where none); empty for "texts"
  int64_t top_k = 0;
};
V1Request parse_v1_request(const std::string& body, const infer::Predictor& predictor);

/// The "predictions" array: one object per input, its id first, the answer of each valid input in
/// order (`answers` holds those only), {"error"} for the others.
nlohmann::ordered_json v1_predictions(const V1Request& request, std::vector<nlohmann::ordered_json>& answers);

}  // namespace ltk::serve
