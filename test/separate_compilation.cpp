// test_ensemble is built the way <ensemble/separate_compilation.hpp> describes: every file
// with ENSEMBLE_SEPARATE_COMPILATION, and the service reactor compiled here, once. The
// examples, the fuzz replays and the consumer projects stay header-only, so both ways are
// built and run.
#include <ensemble/separate_compilation.hpp>
