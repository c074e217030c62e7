// Host (CPU) build of the kernels' per-element math, loaded with ctypes by tests/test_plugins.py.
//
// Runs the very functions the CUDA kernels run: the direct per-element correlation, the three phases of the
// tiled correlation kernel (executed block by block, thread by thread, with the launcher's own plan and a
// shared-memory buffer of exactly the planned size), and the per-pixel homography warp.
// dtype: 0 = float32, 1 = float16 (buffers of __half). Functions return 0 on success.
#include "homography_warp/homography_warp_math.h"
#include "spatial_correlation/spatial_correlation_math.h"

#include <algorithm>
#include <vector>

using namespace semshare::kernels;

namespace
{

CorrelationShape correlationShape(int b, int c, int h, int w, int p, int d, int normalize)
{
    return CorrelationShape{b, c, h, w, p, d, normalize != 0};
}

template <typename T>
void correlationDirect(void const* x1, void const* x2, void* out, CorrelationShape const& s)
{
    T const* a = static_cast<T const*>(x1);
    T const* b = static_cast<T const*>(x2);
    T* o = static_cast<T*>(out);
    int64_t n = 0;
    for (int bi = 0; bi < s.batch; ++bi)
        for (int k = 0; k < s.patchSize * s.patchSize; ++k)
            for (int y = 0; y < s.height; ++y)
                for (int x = 0; x < s.width; ++x)
                    o[n++] = fromFloat<T>(correlationAt(a, b, s, bi, k, y, x));
}

template <typename T, int kP>
int correlationTiled(void const* x1v, void const* x2v, void* outv, CorrelationShape const& s, CorrelationPlan const& plan)
{
    T const* x1 = static_cast<T const*>(x1v);
    T const* x2 = static_cast<T const*>(x2v);
    T* out = static_cast<T*>(outv);
    int64_t const sharedFloats = plan.sharedBytes / static_cast<int64_t>(sizeof(float));
    std::vector<float> shared(static_cast<size_t>(sharedFloats));
    std::vector<float> acc(static_cast<size_t>(kCorrThreads) * kP * kP);
    float* x1s = shared.data();
    float* x2s = shared.data() + plan.chunk * kCorrThreads;
    for (int z = 0; z < s.batch * plan.rowGroups; ++z)
    {
        int const b = z / plan.rowGroups;
        int const group = z - b * plan.rowGroups;
        int const rowBegin = group * plan.rowsPerBlock;
        int const rowEnd = std::min(kP, rowBegin + plan.rowsPerBlock);
        for (int tileY = 0; tileY < plan.tilesY; ++tileY)
        {
            for (int tileX = 0; tileX < plan.tilesX; ++tileX)
            {
                CorrelationTile t = makeCorrelationTile(s, b, tileX, tileY, rowBegin, rowEnd);
                std::fill(acc.begin(), acc.end(), 0.F);
                for (int cBase = 0; cBase < s.channels; cBase += plan.chunk)
                {
                    t.cBase = cBase;
                    t.cCount = std::min(plan.chunk, s.channels - cBase);
                    int const elements = correlationTileElements(t);
                    if (elements > sharedFloats)
                    {
                        return 2; // the kernel would overrun its shared memory
                    }
                    for (int e = 0; e < elements; ++e)
                    {
                        loadCorrelationTileElement(x1, x2, s, t, e, x1s, x2s);
                    }
                    for (int tid = 0; tid < kCorrThreads; ++tid)
                    {
                        accumulateCorrelationPixel<kP>(s, t, tid % kCorrTileW, tid / kCorrTileW, x1s, x2s,
                            acc.data() + static_cast<size_t>(tid) * kP * kP);
                    }
                }
                for (int tid = 0; tid < kCorrThreads; ++tid)
                {
                    storeCorrelationPixel<T, kP>(s, t, tid % kCorrTileW, tid / kCorrTileW,
                        acc.data() + static_cast<size_t>(tid) * kP * kP, out);
                }
            }
        }
    }
    return 0;
}

template <typename T>
int correlationTiledDispatch(void const* x1, void const* x2, void* out, CorrelationShape const& s, int minBlocks)
{
    CorrelationPlan const plan = planCorrelation(s, minBlocks, 48 * 1024);
    if (!plan.tiled)
    {
        return 1;
    }
    switch (s.patchSize)
    {
    case 1: return correlationTiled<T, 1>(x1, x2, out, s, plan);
    case 3: return correlationTiled<T, 3>(x1, x2, out, s, plan);
    case 5: return correlationTiled<T, 5>(x1, x2, out, s, plan);
    case 7: return correlationTiled<T, 7>(x1, x2, out, s, plan);
    case 9: return correlationTiled<T, 9>(x1, x2, out, s, plan);
    default: return 1;
    }
}

//! The warp kernel's launch, block by block and thread by thread, with the launcher's own geometry.
template <typename T>
void homographyWarp(void const* src, float const* h, void* dst, WarpShape const& s, int64_t maxBlocks)
{
    WarpLaunch const launch = planWarpLaunch(s, maxBlocks);
    int64_t const stride = launch.blocks * kWarpThreads;
    for (int64_t block = 0; block < launch.blocks; ++block)
        for (int thread = 0; thread < kWarpThreads; ++thread)
            warpThread(static_cast<T const*>(src), h, s, launch.items, block * kWarpThreads + thread, stride,
                static_cast<T*>(dst));
}

} // namespace

extern "C"
{

int semshare_correlation_direct(int dtype, void const* x1, void const* x2, void* out, int b, int c, int h, int w,
    int p, int d, int normalize)
{
    CorrelationShape const s = correlationShape(b, c, h, w, p, d, normalize);
    if (dtype == 0)
        correlationDirect<float>(x1, x2, out, s);
    else if (dtype == 1)
        correlationDirect<__half>(x1, x2, out, s);
    else
        return 3;
    return 0;
}

int semshare_correlation_tiled(int dtype, void const* x1, void const* x2, void* out, int b, int c, int h, int w,
    int p, int d, int normalize, int minBlocks)
{
    CorrelationShape const s = correlationShape(b, c, h, w, p, d, normalize);
    if (dtype == 0)
        return correlationTiledDispatch<float>(x1, x2, out, s, minBlocks);
    if (dtype == 1)
        return correlationTiledDispatch<__half>(x1, x2, out, s, minBlocks);
    return 3;
}

//! plan: tiled, rowsPerBlock, rowGroups, chunk, tilesX, tilesY, sharedBytes
void semshare_correlation_plan(int b, int c, int h, int w, int p, int d, int minBlocks, long long* plan)
{
    CorrelationPlan const r = planCorrelation(correlationShape(b, c, h, w, p, d, 1), minBlocks, 48 * 1024);
    long long const values[7] = {r.tiled ? 1 : 0, r.rowsPerBlock, r.rowGroups, r.chunk, r.tilesX, r.tilesY,
        r.sharedBytes};
    std::copy(values, values + 7, plan);
}

//! maxBlocks <= 0: the launcher's kWarpMaxBlocks; smaller values make every thread stride over many items.
int semshare_homography_warp(int dtype, void const* src, float const* srcFromDst, void* dst, int b, int c, int hs,
    int ws, int hd, int wd, int hb, int alignCorners, long long maxBlocks)
{
    WarpShape const s{b, c, hs, ws, hd, wd, hb, alignCorners != 0};
    int64_t const blocks = maxBlocks > 0 ? maxBlocks : kWarpMaxBlocks;
    if (dtype == 0)
        homographyWarp<float>(src, srcFromDst, dst, s, blocks);
    else if (dtype == 1)
        homographyWarp<__half>(src, srcFromDst, dst, s, blocks);
    else
        return 3;
    return 0;
}

//! plan: items, blocks (gridDim.x) of the launcher's geometry; the grid is 1-D (gridDim.y = gridDim.z = 1).
void semshare_homography_warp_plan(int b, int hd, int wd, long long* plan)
{
    WarpShape const s{b, 1, 1, 1, hd, wd, 1, true};
    WarpLaunch const launch = planWarpLaunch(s, kWarpMaxBlocks);
    plan[0] = launch.items;
    plan[1] = launch.blocks;
}

} // extern "C"
