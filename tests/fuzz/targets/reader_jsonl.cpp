// The jsonl reader on arbitrary bytes (reader.h).
#include "reader.h"

LTK_FUZZ_TARGET(reader_jsonl) { fuzz_reader(input, "jsonl"); }
