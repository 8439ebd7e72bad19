// ltk-predict-torch: ltk-predict with LibTorch, which answers every run. The ltk-predict users run
// is built without LibTorch (apps/CMakeLists.txt): it answers linear runs itself and executes this
// program, with its own arguments, for the others.
#define LTK_PREDICT_LIBTORCH 1
#include "ltk_predict.cpp"
