// SpatialCorrelation per-element math, shared verbatim by the CUDA kernels and the host (CPU test) build.
//
//   out[b, i*P + j, y, x] = s * sum_c x1[b, c, y, x] * x2[b, c, y + (i - P/2)*d, x + (j - P/2)*d]
//
// with zero where x2 is read outside the image, d = dilation_patch, s = 1/C if normalize else 1; sums in float.
//
// The tiled kernel is written as three phases that a CUDA block runs with __syncthreads() between them and
// that the host build runs thread by thread (see correlationTiledHost in the CPU test library):
//   1. loadCorrelationTileElement: copy one element of the x1 tile or the x2 halo (zero outside) to shared memory;
//   2. accumulateCorrelationPixel: one output pixel, all displacement rows of the block, a chunk of channels;
//   3. storeCorrelationPixel: scale and write that pixel's P*P (or row-group) outputs.
#pragma once

#include "common/host_device.h"

namespace semshare::kernels
{

//! Output tile of one block of the tiled kernel: kCorrTileW x kCorrTileH pixels, one thread per pixel.
constexpr int kCorrTileW = 32;
constexpr int kCorrTileH = 8;
constexpr int kCorrThreads = kCorrTileW * kCorrTileH;
//! Largest channel chunk staged in shared memory at once.
constexpr int kCorrMaxChunk = 8;

struct CorrelationShape
{
    int batch;
    int channels;
    int height;
    int width;
    int patchSize;     //!< P, odd
    int dilationPatch; //!< d >= 1
    bool normalize;
};

SEMSHARE_HD int correlationRadius(CorrelationShape const& s)
{
    return (s.patchSize / 2) * s.dilationPatch;
}

SEMSHARE_HD float finishCorrelation(float sum, CorrelationShape const& s)
{
    return s.normalize ? sum / static_cast<float>(s.channels) : sum;
}

//! Direct form: one output element from global memory (the fallback kernel and the reference host loop).
template <typename T>
SEMSHARE_HD float correlationAt(T const* x1, T const* x2, CorrelationShape const& s, int b, int k, int y, int x)
{
    int const half = s.patchSize / 2;
    int const i = k / s.patchSize;
    int const j = k - i * s.patchSize;
    int const y2 = y + (i - half) * s.dilationPatch;
    int const x2c = x + (j - half) * s.dilationPatch;
    float sum = 0.F;
    if (y2 >= 0 && y2 < s.height && x2c >= 0 && x2c < s.width)
    {
        int64_t const plane = static_cast<int64_t>(s.height) * s.width;
        int64_t const base = static_cast<int64_t>(b) * s.channels * plane;
        int64_t const at1 = base + static_cast<int64_t>(y) * s.width + x;
        int64_t const at2 = base + static_cast<int64_t>(y2) * s.width + x2c;
        for (int c = 0; c < s.channels; ++c)
        {
            sum += toFloat(x1[at1 + c * plane]) * toFloat(x2[at2 + c * plane]);
        }
    }
    return finishCorrelation(sum, s);
}

//! Where one block of the tiled kernel works: pixel origin, displacement rows [rowBegin, rowEnd), the x2 halo
//! needed for them, and the channel chunk currently staged.
struct CorrelationTile
{
    int b;
    int x0;
    int y0;
    int rowBegin;
    int rowEnd;
    int haloX0;
    int haloY0;
    int haloW;
    int haloH;
    int cBase;
    int cCount;
};

//! Tile of block (tileX, tileY) for batch b and displacement rows [rowBegin, rowEnd).
SEMSHARE_HD CorrelationTile makeCorrelationTile(
    CorrelationShape const& s, int b, int tileX, int tileY, int rowBegin, int rowEnd)
{
    int const half = s.patchSize / 2;
    CorrelationTile t{};
    t.b = b;
    t.x0 = tileX * kCorrTileW;
    t.y0 = tileY * kCorrTileH;
    t.rowBegin = rowBegin;
    t.rowEnd = rowEnd;
    t.haloX0 = t.x0 - half * s.dilationPatch;
    t.haloY0 = t.y0 + (rowBegin - half) * s.dilationPatch;
    t.haloW = kCorrTileW + 2 * half * s.dilationPatch;
    t.haloH = kCorrTileH + (rowEnd - rowBegin - 1) * s.dilationPatch;
    t.cBase = 0;
    t.cCount = 0;
    return t;
}

//! Floats of shared memory for a chunk of \p chunk channels: x1 tile then x2 halo.
SEMSHARE_HD int64_t correlationSharedFloats(CorrelationShape const& s, int rowsPerBlock, int chunk)
{
    int const half = s.patchSize / 2;
    int64_t const haloW = kCorrTileW + 2 * half * s.dilationPatch;
    int64_t const haloH = kCorrTileH + (rowsPerBlock - 1) * s.dilationPatch;
    return static_cast<int64_t>(chunk) * (kCorrThreads + haloH * haloW);
}

//! Number of elements phase 1 copies for the current chunk.
SEMSHARE_HD int correlationTileElements(CorrelationTile const& t)
{
    return t.cCount * (kCorrThreads + t.haloH * t.haloW);
}

//! Phase 1: copy element \p e of the chunk (x1 tile first, then x2 halo) into x1s / x2s, zero outside the image.
//! x1s is [cCount][kCorrTileH][kCorrTileW], x2s is [cCount][haloH][haloW].
template <typename T>
SEMSHARE_HD void loadCorrelationTileElement(T const* x1, T const* x2, CorrelationShape const& s,
    CorrelationTile const& t, int e, float* x1s, float* x2s)
{
    int64_t const plane = static_cast<int64_t>(s.height) * s.width;
    int const x1Elements = t.cCount * kCorrThreads;
    if (e < x1Elements)
    {
        int const c = e / kCorrThreads;
        int const r = e - c * kCorrThreads;
        int const ty = r / kCorrTileW;
        int const tx = r - ty * kCorrTileW;
        int const y = t.y0 + ty;
        int const x = t.x0 + tx;
        float value = 0.F;
        if (y < s.height && x < s.width)
        {
            value = toFloat(x1[(static_cast<int64_t>(t.b) * s.channels + t.cBase + c) * plane
                + static_cast<int64_t>(y) * s.width + x]);
        }
        x1s[e] = value;
        return;
    }
    int const e2 = e - x1Elements;
    int const haloPlane = t.haloH * t.haloW;
    int const c = e2 / haloPlane;
    int const r = e2 - c * haloPlane;
    int const hy = r / t.haloW;
    int const hx = r - hy * t.haloW;
    int const y = t.haloY0 + hy;
    int const x = t.haloX0 + hx;
    float value = 0.F;
    if (y >= 0 && y < s.height && x >= 0 && x < s.width)
    {
        value = toFloat(x2[(static_cast<int64_t>(t.b) * s.channels + t.cBase + c) * plane
            + static_cast<int64_t>(y) * s.width + x]);
    }
    x2s[e2] = value;
}

//! Phase 2: add the staged chunk's contribution to pixel (tx, ty) of the tile for rows [rowBegin, rowEnd).
//! acc[i * kP + j] holds displacement (i, j). kP is the compile-time patch size (== s.patchSize).
template <int kP>
SEMSHARE_HD void accumulateCorrelationPixel(CorrelationShape const& s, CorrelationTile const& t, int tx, int ty,
    float const* x1s, float const* x2s, float* acc)
{
    int const d = s.dilationPatch;
    int const haloPlane = t.haloH * t.haloW;
    for (int c = 0; c < t.cCount; ++c)
    {
        float const a = x1s[c * kCorrThreads + ty * kCorrTileW + tx];
        float const* halo = x2s + c * haloPlane;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
        for (int i = 0; i < kP; ++i)
        {
            if (i >= t.rowBegin && i < t.rowEnd)
            {
                float const* row = halo + (ty + (i - t.rowBegin) * d) * t.haloW + tx;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
                for (int j = 0; j < kP; ++j)
                {
                    acc[i * kP + j] += a * row[j * d];
                }
            }
        }
    }
}

//! Phase 3: write pixel (tx, ty)'s outputs for rows [rowBegin, rowEnd).
template <typename T, int kP>
SEMSHARE_HD void storeCorrelationPixel(
    CorrelationShape const& s, CorrelationTile const& t, int tx, int ty, float const* acc, T* out)
{
    int const y = t.y0 + ty;
    int const x = t.x0 + tx;
    if (y >= s.height || x >= s.width)
    {
        return;
    }
    int64_t const plane = static_cast<int64_t>(s.height) * s.width;
    int64_t const base = static_cast<int64_t>(t.b) * kP * kP * plane + static_cast<int64_t>(y) * s.width + x;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int i = 0; i < kP; ++i)
    {
        if (i >= t.rowBegin && i < t.rowEnd)
        {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
            for (int j = 0; j < kP; ++j)
            {
                out[base + (i * kP + j) * plane] = fromFloat<T>(finishCorrelation(acc[i * kP + j], s));
            }
        }
    }
}

} // namespace semshare::kernels

namespace semshare::kernels
{

//! How a launch is organised: tiled (shared memory) or direct, rows per block, channels per chunk.
struct CorrelationPlan
{
    bool tiled;
    int rowsPerBlock;   //!< displacement rows one block computes (== P unless the grid would be too small)
    int rowGroups;      //!< ceil(P / rowsPerBlock)
    int chunk;          //!< channels staged per pass
    int tilesX;
    int tilesY;
    int64_t sharedBytes;
};

//! Patch sizes with a compiled tiled kernel; any other odd P runs the direct kernel.
SEMSHARE_HD bool correlationHasTiledKernel(int patchSize)
{
    return patchSize == 1 || patchSize == 3 || patchSize == 5 || patchSize == 7 || patchSize == 9;
}

//! Pick the launch organisation. \p minBlocks: below this many blocks, split the displacement rows across blocks
//! (one row each) so that small feature maps still fill the GPU. \p maxSharedBytes: per-block shared memory limit.
SEMSHARE_HD CorrelationPlan planCorrelation(CorrelationShape const& s, int minBlocks, int64_t maxSharedBytes)
{
    CorrelationPlan plan{};
    plan.tilesX = (s.width + kCorrTileW - 1) / kCorrTileW;
    plan.tilesY = (s.height + kCorrTileH - 1) / kCorrTileH;
    plan.rowsPerBlock = s.patchSize;
    plan.rowGroups = 1;
    int64_t const tiles = static_cast<int64_t>(plan.tilesX) * plan.tilesY * s.batch;
    if (tiles < minBlocks)
    {
        plan.rowsPerBlock = 1;
        plan.rowGroups = s.patchSize;
    }
    plan.tiled = false;
    plan.chunk = 0;
    if (!correlationHasTiledKernel(s.patchSize) || static_cast<int64_t>(s.batch) * plan.rowGroups > 65535
        || plan.tilesY > 65535)
    {
        return plan;
    }
    for (int chunk = kCorrMaxChunk; chunk >= 1; --chunk)
    {
        int64_t const bytes = correlationSharedFloats(s, plan.rowsPerBlock, chunk) * static_cast<int64_t>(sizeof(float));
        if (bytes <= maxSharedBytes)
        {
            plan.tiled = true;
            plan.chunk = chunk < s.channels ? chunk : s.channels;
            plan.sharedBytes
                = correlationSharedFloats(s, plan.rowsPerBlock, plan.chunk) * static_cast<int64_t>(sizeof(float));
            return plan;
        }
    }
    return plan;
}

} // namespace semshare::kernels
