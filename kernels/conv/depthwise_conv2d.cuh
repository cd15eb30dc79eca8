// Umbrella header: every depthwise conv2d kernel (shared-memory tiled gather, direct gather, column walk,
// weight-grad + finalize) and the host-side planning that builds their parameters.
#pragma once

#include "conv/depthwise_conv2d_column.cuh"
#include "conv/depthwise_conv2d_direct.cuh"
#include "conv/depthwise_conv2d_params.cuh"
#include "conv/depthwise_conv2d_tiled.cuh"
#include "conv/depthwise_conv2d_wgrad.cuh"
