// The daemon's generated EnsembleService::CallbackService with its constructor and destructor
// compiled once, in ensemble_service_base.cpp. That constructor builds a handler for each of
// the daemon's methods: a few thousand instantiations, about 7 s of CPU in every translation
// unit that makes one. The test servers that play the daemon derive from this instead.
#pragma once

#include <ensemble/proto/ensemble.grpc.pb.h>

namespace test_support {

class EnsembleServiceBase : public ensemble::api::EnsembleService::CallbackService {
 public:
  EnsembleServiceBase();
  ~EnsembleServiceBase() override;
};

}  // namespace test_support
