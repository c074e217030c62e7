// HomographyWarp CUDA launcher: raw device pointers, a stream, a cudaError_t. No TensorRT here.
#pragma once

#include "homography_warp/homography_warp_math.h"

#include <cuda_runtime_api.h>

namespace semshare::kernels
{

//! dst (B, C, Hd, Wd) = src (B, C, Hs, Ws) sampled through src_from_dst (homographyBatch, 3, 3) float32;
//! src and dst of type T (float or __half), contiguous NCHW, float accumulation.
template <typename T>
cudaError_t launchHomographyWarp(
    T const* src, float const* srcFromDst, T* dst, WarpShape const& shape, cudaStream_t stream);

extern template cudaError_t launchHomographyWarp<float>(
    float const*, float const*, float*, WarpShape const&, cudaStream_t);
extern template cudaError_t launchHomographyWarp<__half>(
    __half const*, float const*, __half*, WarpShape const&, cudaStream_t);

} // namespace semshare::kernels
