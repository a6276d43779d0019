// Placeholder: the implementation is being written.
#include "backend/auth/auth_store.h"
