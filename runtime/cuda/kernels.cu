// Instantiates the grid-stride launcher for every shared kernel body.
#include "runtime/codec_bodies.h"
#include "runtime/cuda/launch.cuh"
#include "runtime/kernel_bodies.h"
#include "runtime/nn_bodies.h"

namespace lowband::runtime::cuda {

#define LB_INSTANTIATE(Body) template void launch<Body>(void*, int64_t, const Body&);
LB_KERNEL_BODIES(LB_INSTANTIATE)
LB_NN_BODIES(LB_INSTANTIATE)
LB_CODEC_BODIES(LB_INSTANTIATE)
#undef LB_INSTANTIATE

}  // namespace lowband::runtime::cuda
