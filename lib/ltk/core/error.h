// The exceptions ltk throws. Every message names what is at fault (file:line, config key,
// value, batch) and what to do about it; apps print it as one line and exit non-zero.
#pragma once

#include <stdexcept>
#include <string>

namespace ltk {

/// Base of every ltk error.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A bad configuration: unknown key, wrong type, value out of range. Apps exit 2.
class ConfigError : public Error {
 public:
  using Error::Error;
};

/// A bad command line. Apps exit 2.
class UsageError : public Error {
 public:
  using Error::Error;
};

/// Bad input data: unreadable file, malformed row, label or token id out of range.
class DataError : public Error {
 public:
  using Error::Error;
};

/// A checkpoint or run directory that cannot be read or does not match the model.
class CheckpointError : public Error {
 public:
  using Error::Error;
};

/// A failure during training or evaluation (non-finite loss, wrong loss shape, device mismatch).
class TrainError : public Error {
 public:
  using Error::Error;
};

}  // namespace ltk
