// Placeholder: the implementation is being written.
#include "backend/auth/token.h"
