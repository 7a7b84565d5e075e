// Includes every public header and uses nothing. A header-only library should cost such a
// file parsing time only: test/emitted/check_nm.py fails if this object defines any function
// of the library (a lambda held in a static member once made GCC emit six unary calls here).
#include <ensemble/ensemble.hpp>
