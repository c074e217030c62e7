#include "homography_warp/homography_warp_kernel.h"

namespace semshare::kernels
{
namespace
{

//! One thread per (batch, destination pixel) item, grid-stride (warpThread): projects the pixel once, then samples
//! every channel. No sampling grid is materialised.
template <typename T>
__global__ void __launch_bounds__(kWarpThreads) homographyWarpKernel(
    T const* __restrict__ src, float const* __restrict__ srcFromDst, T* __restrict__ dst, WarpShape s, int64_t items)
{
    warpThread(src, srcFromDst, s, items, blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x,
        static_cast<int64_t>(gridDim.x) * blockDim.x, dst);
}

} // namespace

template <typename T>
cudaError_t launchHomographyWarp(
    T const* src, float const* srcFromDst, T* dst, WarpShape const& shape, cudaStream_t stream)
{
    if (shape.batch < 0 || shape.channels < 0 || shape.srcHeight < 0 || shape.srcWidth < 0 || shape.dstHeight < 2
        || shape.dstWidth < 2 || !(shape.homographyBatch == 1 || shape.homographyBatch == shape.batch))
    {
        return cudaErrorInvalidValue;
    }
    if (shape.batch == 0 || shape.channels == 0)
    {
        return cudaSuccess;
    }
    WarpLaunch const launch = planWarpLaunch(shape, kWarpMaxBlocks);
    homographyWarpKernel<T>
        <<<static_cast<unsigned>(launch.blocks), kWarpThreads, 0, stream>>>(src, srcFromDst, dst, shape, launch.items);
    return cudaGetLastError();
}

template cudaError_t launchHomographyWarp<float>(float const*, float const*, float*, WarpShape const&, cudaStream_t);
template cudaError_t launchHomographyWarp<__half>(
    __half const*, float const*, __half*, WarpShape const&, cudaStream_t);

} // namespace semshare::kernels
