// ltk's public API: the header a program includes. Train a text classifier from a config and
// classify texts with a trained run:
//
//   #include <ltk/ltk.h>
//   ltk::TrainResult r = ltk::train(ltk::load_config("my.json"));
//   ltk::Classifier clf(r.run_dir);
//   std::cout << clf.classify("some text").label << "\n";
//
// Link ltk::ltk (find_package(ltk)). Everything else under ltk/ is private to the library.
#pragma once

#include "ltk/api/classifier.h"
#include "ltk/api/train.h"
#include "ltk/config/config.h"
#include "ltk/core/error.h"
#include "ltk/core/version.h"
#include "ltk/models/load_config.h"
