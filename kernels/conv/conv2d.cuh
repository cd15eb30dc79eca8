// Umbrella header: every conv2d kernel (forward, input-grad, weight-grad + split-K reduction).
#pragma once

#include "conv/conv2d_dgrad.cuh"
#include "conv/conv2d_fwd.cuh"
#include "conv/conv2d_wgrad.cuh"
