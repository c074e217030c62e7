#include "spatial_correlation/spatial_correlation_kernel.h"

namespace semshare::kernels
{
namespace
{

//! Shared-memory tiled kernel: a block owns a kCorrTileW x kCorrTileH pixel tile and a group of displacement
//! rows, stages x1 and the x2 halo in shared memory one channel chunk at a time (each input element read from
//! global memory once per tile), and keeps the tile's outputs in registers until the end.
template <typename T, int kP>
__global__ void __launch_bounds__(kCorrThreads) correlationTiledKernel(
    T const* __restrict__ x1, T const* __restrict__ x2, T* __restrict__ out, CorrelationShape s, int rowsPerBlock,
    int rowGroups, int chunk)
{
    extern __shared__ float shared[];
    float* x1s = shared;
    float* x2s = shared + chunk * kCorrThreads;

    int const b = blockIdx.z / rowGroups;
    int const group = blockIdx.z - b * rowGroups;
    int const rowBegin = group * rowsPerBlock;
    int const rowEnd = min(kP, rowBegin + rowsPerBlock);
    CorrelationTile t = makeCorrelationTile(s, b, blockIdx.x, blockIdx.y, rowBegin, rowEnd);

    int const tx = threadIdx.x % kCorrTileW;
    int const ty = threadIdx.x / kCorrTileW;
    float acc[kP * kP];
#pragma unroll
    for (int k = 0; k < kP * kP; ++k)
    {
        acc[k] = 0.F;
    }

    for (int cBase = 0; cBase < s.channels; cBase += chunk)
    {
        t.cBase = cBase;
        t.cCount = min(chunk, s.channels - cBase);
        int const elements = correlationTileElements(t);
        for (int e = threadIdx.x; e < elements; e += kCorrThreads)
        {
            loadCorrelationTileElement(x1, x2, s, t, e, x1s, x2s);
        }
        __syncthreads();
        accumulateCorrelationPixel<kP>(s, t, tx, ty, x1s, x2s, acc);
        __syncthreads();
    }
    storeCorrelationPixel<T, kP>(s, t, tx, ty, acc, out);
}

//! Fallback for patch sizes without a tiled kernel or halos too large for shared memory.
template <typename T>
__global__ void correlationDirectKernel(
    T const* __restrict__ x1, T const* __restrict__ x2, T* __restrict__ out, CorrelationShape s)
{
    int64_t const plane = static_cast<int64_t>(s.height) * s.width;
    int64_t const displacements = static_cast<int64_t>(s.patchSize) * s.patchSize;
    int64_t const total = static_cast<int64_t>(s.batch) * displacements * plane;
    for (int64_t n = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; n < total;
         n += static_cast<int64_t>(gridDim.x) * blockDim.x)
    {
        int64_t const p = n % plane;
        int64_t const bk = n / plane;
        int const k = static_cast<int>(bk % displacements);
        int const b = static_cast<int>(bk / displacements);
        int const y = static_cast<int>(p / s.width);
        int const x = static_cast<int>(p - static_cast<int64_t>(y) * s.width);
        out[n] = fromFloat<T>(correlationAt(x1, x2, s, b, k, y, x));
    }
}

template <typename T, int kP>
cudaError_t launchTiled(T const* x1, T const* x2, T* out, CorrelationShape const& s, CorrelationPlan const& plan,
    cudaStream_t stream)
{
    auto kernel = correlationTiledKernel<T, kP>;
    if (plan.sharedBytes > 48 * 1024)
    {
        cudaError_t const status = cudaFuncSetAttribute(
            kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(plan.sharedBytes));
        if (status != cudaSuccess)
        {
            return status;
        }
    }
    dim3 const grid(plan.tilesX, plan.tilesY, s.batch * plan.rowGroups);
    kernel<<<grid, kCorrThreads, plan.sharedBytes, stream>>>(
        x1, x2, out, s, plan.rowsPerBlock, plan.rowGroups, plan.chunk);
    return cudaGetLastError();
}

} // namespace

cudaError_t currentMultiProcessorCount(int& count)
{
    int device = 0;
    cudaError_t const status = cudaGetDevice(&device);
    return status == cudaSuccess ? cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device) : status;
}

template <typename T>
cudaError_t launchSpatialCorrelation(
    T const* x1, T const* x2, T* out, CorrelationShape const& shape, int multiProcessors, cudaStream_t stream)
{
    if (shape.channels < 1 || shape.patchSize < 1 || shape.patchSize % 2 == 0 || shape.dilationPatch < 1
        || shape.batch < 0 || shape.height < 0 || shape.width < 0 || multiProcessors < 1)
    {
        return cudaErrorInvalidValue;
    }
    if (shape.batch == 0 || shape.height == 0 || shape.width == 0)
    {
        return cudaSuccess;
    }
    CorrelationPlan const plan = planCorrelation(shape, 2 * multiProcessors, 48 * 1024);
    if (plan.tiled)
    {
        switch (shape.patchSize)
        {
        case 1: return launchTiled<T, 1>(x1, x2, out, shape, plan, stream);
        case 3: return launchTiled<T, 3>(x1, x2, out, shape, plan, stream);
        case 5: return launchTiled<T, 5>(x1, x2, out, shape, plan, stream);
        case 7: return launchTiled<T, 7>(x1, x2, out, shape, plan, stream);
        case 9: return launchTiled<T, 9>(x1, x2, out, shape, plan, stream);
        default: break;
        }
    }
    int64_t const total = static_cast<int64_t>(shape.batch) * shape.patchSize * shape.patchSize * shape.height
        * shape.width;
    int64_t const blocks = (total + 255) / 256;
    int const gridSize = static_cast<int>(blocks < 65535 * 8 ? blocks : 65535 * 8);
    correlationDirectKernel<T><<<gridSize, 256, 0, stream>>>(x1, x2, out, shape);
    return cudaGetLastError();
}

template cudaError_t launchSpatialCorrelation<float>(
    float const*, float const*, float*, CorrelationShape const&, int, cudaStream_t);
template cudaError_t launchSpatialCorrelation<__half>(
    __half const*, __half const*, __half*, CorrelationShape const&, int, cudaStream_t);

} // namespace semshare::kernels
