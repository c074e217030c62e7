// What the per-element math headers share: a qualifier that makes a function __host__ __device__ under nvcc
// and a plain inline function under a host compiler, and float <-> storage-type conversions.
// cuda_fp16.h builds with a host compiler too (host conversions are emulated), so the __half code paths of
// the math headers are exercised by the CPU tests as well.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#if defined(__CUDACC__)
#define SEMSHARE_HD __host__ __device__ __forceinline__
#else
#define SEMSHARE_HD inline
#endif

namespace semshare::kernels
{

SEMSHARE_HD float toFloat(float value)
{
    return value;
}

SEMSHARE_HD float toFloat(__half value)
{
    return __half2float(value);
}

template <typename T>
SEMSHARE_HD T fromFloat(float value);

template <>
SEMSHARE_HD float fromFloat<float>(float value)
{
    return value;
}

template <>
SEMSHARE_HD __half fromFloat<__half>(float value)
{
    return __float2half_rn(value);
}

} // namespace semshare::kernels
