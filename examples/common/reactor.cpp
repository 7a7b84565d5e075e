// The service reactor and the Client, compiled once for every example program rather than in
// each: the examples are built with ENSEMBLE_SEPARATE_COMPILATION (examples/meson.build), as
// README's "Separate compilation" describes for a project of several programs. Their sources
// do not depend on it; copied into a project of one file, each compiles header-only as it is.
#include <ensemble/separate_compilation.hpp>
