// Emulated CUDA header for host tests (see emulation.h).
#pragma once
#include "emulation.h"
