// The csv reader on arbitrary bytes (reader.h).
#include "reader.h"

LTK_FUZZ_TARGET(reader_csv) { fuzz_reader(input, "csv"); }
