#include "homography_warp/homography_warp_kernel.h"

namespace semshare::kernels
{
namespace
{

constexpr int kWarpThreads = 256;

//! One thread per destination pixel (blockIdx.y = batch): projects the pixel once, then samples every channel.
//! No sampling grid is materialised.
template <typename T>
__global__ void __launch_bounds__(kWarpThreads) homographyWarpKernel(
    T const* __restrict__ src, float const* __restrict__ srcFromDst, T* __restrict__ dst, WarpShape s)
{
    int64_t const pixels = static_cast<int64_t>(s.dstHeight) * s.dstWidth;
    int const b = blockIdx.y;
    for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < pixels;
         p += static_cast<int64_t>(gridDim.x) * blockDim.x)
    {
        int const v = static_cast<int>(p / s.dstWidth);
        int const u = static_cast<int>(p - static_cast<int64_t>(v) * s.dstWidth);
        warpPixel(src, srcFromDst, s, b, v, u, dst);
    }
}

} // namespace

template <typename T>
cudaError_t launchHomographyWarp(
    T const* src, float const* srcFromDst, T* dst, WarpShape const& shape, cudaStream_t stream)
{
    if (shape.batch < 0 || shape.channels < 0 || shape.srcHeight < 0 || shape.srcWidth < 0 || shape.dstHeight < 2
        || shape.dstWidth < 2 || !(shape.homographyBatch == 1 || shape.homographyBatch == shape.batch)
        || shape.batch > 65535)
    {
        return cudaErrorInvalidValue;
    }
    if (shape.batch == 0 || shape.channels == 0)
    {
        return cudaSuccess;
    }
    int64_t const pixels = static_cast<int64_t>(shape.dstHeight) * shape.dstWidth;
    int64_t const blocks = (pixels + kWarpThreads - 1) / kWarpThreads;
    dim3 const grid(static_cast<unsigned>(blocks < 1 << 20 ? blocks : 1 << 20), shape.batch);
    homographyWarpKernel<T><<<grid, kWarpThreads, 0, stream>>>(src, srcFromDst, dst, shape);
    return cudaGetLastError();
}

template cudaError_t launchHomographyWarp<float>(float const*, float const*, float*, WarpShape const&, cudaStream_t);
template cudaError_t launchHomographyWarp<__half>(
    __half const*, float const*, __half*, WarpShape const&, cudaStream_t);

} // namespace semshare::kernels
