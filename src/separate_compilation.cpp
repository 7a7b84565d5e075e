// The service reactor and the Client, compiled once for the programs of this repository that
// are built the way <ensemble/separate_compilation.hpp> describes (every file with
// ENSEMBLE_SEPARATE_COMPILATION): test_ensemble and the examples (meson.build,
// ensemble_reactor). The benchmark, the fuzz replays and the consumer projects stay
// header-only, so both ways are built and run.
#include <ensemble/separate_compilation.hpp>
