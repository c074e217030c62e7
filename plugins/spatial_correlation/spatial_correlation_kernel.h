// SpatialCorrelation CUDA launchers: raw device pointers, a stream, a cudaError_t. No TensorRT here.
#pragma once

#include "spatial_correlation/spatial_correlation_math.h"

#include <cuda_runtime_api.h>

namespace semshare::kernels
{

//! out (B, P*P, H, W) = correlation of x1 and x2 (B, C, H, W), all contiguous NCHW of type T (float or __half),
//! float accumulation. Returns the launch error (cudaSuccess when nothing is to be done).
template <typename T>
cudaError_t launchSpatialCorrelation(
    T const* x1, T const* x2, T* out, CorrelationShape const& shape, cudaStream_t stream);

extern template cudaError_t launchSpatialCorrelation<float>(
    float const*, float const*, float*, CorrelationShape const&, cudaStream_t);
extern template cudaError_t launchSpatialCorrelation<__half>(
    __half const*, __half const*, __half*, CorrelationShape const&, cudaStream_t);

} // namespace semshare::kernels
