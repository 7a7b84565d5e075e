// EnsembleServiceBase (ensemble_service_base.hpp): the generated service's handlers, built here once.
#include "ensemble_service_base.hpp"

namespace test_support {

EnsembleServiceBase::EnsembleServiceBase() = default;
EnsembleServiceBase::~EnsembleServiceBase() = default;

}  // namespace test_support
