// The tsv reader on arbitrary bytes (reader.h).
#include "reader.h"

LTK_FUZZ_TARGET(reader_tsv) { fuzz_reader(input, "tsv"); }
