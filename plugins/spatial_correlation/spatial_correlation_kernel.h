// SpatialCorrelation CUDA launchers: raw device pointers, a stream, a cudaError_t. No TensorRT here.
#pragma once

#include "spatial_correlation/spatial_correlation_math.h"

#include <cuda_runtime_api.h>

namespace semshare::kernels
{

//! The current device's multiprocessor count, which the launch plan needs (it aims at 2 blocks per SM). Two CUDA
//! calls: query it once (the plugin does so on its first enqueue and keeps it per instance, i.e. per execution
//! context), not on every launch.
cudaError_t currentMultiProcessorCount(int& count);

//! out (B, P*P, H, W) = correlation of x1 and x2 (B, C, H, W), all contiguous NCHW of type T (float or __half),
//! float accumulation, on a device with \p multiProcessors SMs. Returns the launch error (cudaSuccess when
//! nothing is to be done).
template <typename T>
cudaError_t launchSpatialCorrelation(
    T const* x1, T const* x2, T* out, CorrelationShape const& shape, int multiProcessors, cudaStream_t stream);

extern template cudaError_t launchSpatialCorrelation<float>(
    float const*, float const*, float*, CorrelationShape const&, int, cudaStream_t);
extern template cudaError_t launchSpatialCorrelation<__half>(
    __half const*, __half const*, __half*, CorrelationShape const&, int, cudaStream_t);

} // namespace semshare::kernels
