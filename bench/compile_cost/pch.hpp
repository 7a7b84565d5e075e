// The precompiled header of the README's recipe: what a bot includes, compiled once.
#include <ensemble/ensemble.hpp>
