// HomographyWarp per-element math, shared verbatim by the CUDA kernel and the host (CPU test) build.
//
// Output pixel (u, v) of a Hd x Wd destination: p = (g(u, Wd), g(v, Hd), 1) where g is torch.linspace(-1, 1, n)
// (computed exactly as torch computes it) when align_corners, else the half-pixel (2u + 1) / n - 1, as
// semshare.ops.homography_grid; q = H p with H = src_from_dst[b] (normalised coordinates, destination -> source),
// (qx, qy) = q.xy * (1 / q.z) unless |q.z| <= 1e-8 (then q.xy as is), then bilinear sampling
// of src at (qx, qy) with torch.nn.functional.grid_sample semantics: zeros padding and the given align_corners
// (true: pixel = (q + 1) / 2 * (size - 1); false: ((q + 1) * size - 1) / 2). Sums in float.
#pragma once

#include "common/host_device.h"

#include <math.h>

namespace semshare::kernels
{

struct WarpShape
{
    int batch;
    int channels;
    int srcHeight;
    int srcWidth;
    int dstHeight;
    int dstWidth;
    int homographyBatch; //!< 1 (broadcast) or batch
    bool alignCorners;
};

//! torch.linspace(-1, 1, n)[i] (n >= 2), bit for bit: start + step * i in the first half, end - step * (n - 1 - i)
//! in the second.
SEMSHARE_HD float linspaceMinusOneToOne(int i, int n)
{
    float const step = 2.F / static_cast<float>(n - 1);
    return i < n / 2 ? -1.F + step * static_cast<float>(i) : 1.F - step * static_cast<float>(n - 1 - i);
}

//! Normalised coordinate of destination pixel \p i of \p n (n >= 2), as semshare.ops.homography_grid builds it.
SEMSHARE_HD float destinationCoordinate(int i, int n, bool alignCorners)
{
    return alignCorners ? linspaceMinusOneToOne(i, n)
                        : (static_cast<float>(2 * i) + 1.F) / static_cast<float>(n) - 1.F;
}

//! q = H (px, py, 1), dehomogenised unless |q.z| <= 1e-8. \p h: 9 floats, row-major.
SEMSHARE_HD void projectPoint(float const* h, float px, float py, float& qx, float& qy)
{
    float const x = h[0] * px + h[1] * py + h[2];
    float const y = h[3] * px + h[4] * py + h[5];
    float const z = h[6] * px + h[7] * py + h[8];
    if (z > 1e-8F || z < -1e-8F)
    {
        float const scale = 1.F / z;
        qx = x * scale;
        qy = y * scale;
    }
    else
    {
        qx = x;
        qy = y;
    }
}

//! grid_sample's unnormalisation of a normalised coordinate to a pixel coordinate of an axis of \p size pixels.
SEMSHARE_HD float unnormalizeCoordinate(float q, int size, bool alignCorners)
{
    return alignCorners ? (q + 1.F) / 2.F * static_cast<float>(size - 1)
                        : ((q + 1.F) * static_cast<float>(size) - 1.F) / 2.F;
}

//! The four taps of a bilinear sample at pixel coordinate (ix, iy): offsets into one H x W plane and weights;
//! taps outside the image get weight 0 (and offset 0), as grid_sample's zeros padding.
struct BilinearTaps
{
    int64_t offset[4];
    float weight[4];
};

SEMSHARE_HD BilinearTaps bilinearTaps(float ix, float iy, int height, int width)
{
    BilinearTaps taps{};
    for (int n = 0; n < 4; ++n)
    {
        taps.offset[n] = 0;
        taps.weight[n] = 0.F;
    }
    // Far outside (or NaN): every tap is padding. Also keeps the float -> int conversions below in range.
    if (!(ix > -2.F && ix < static_cast<float>(width) + 1.F && iy > -2.F && iy < static_cast<float>(height) + 1.F))
    {
        return taps;
    }
    float const fx0 = floorf(ix);
    float const fy0 = floorf(iy);
    int const x0 = static_cast<int>(fx0);
    int const y0 = static_cast<int>(fy0);
    int const x1 = x0 + 1;
    int const y1 = y0 + 1;
    float const fx1 = fx0 + 1.F;
    float const fy1 = fy0 + 1.F;
    // grid_sample's weights: nw, ne, sw, se.
    float const w[4] = {(fx1 - ix) * (fy1 - iy), (ix - fx0) * (fy1 - iy), (fx1 - ix) * (iy - fy0),
        (ix - fx0) * (iy - fy0)};
    int const xs[4] = {x0, x1, x0, x1};
    int const ys[4] = {y0, y0, y1, y1};
    for (int n = 0; n < 4; ++n)
    {
        if (xs[n] >= 0 && xs[n] < width && ys[n] >= 0 && ys[n] < height)
        {
            taps.offset[n] = static_cast<int64_t>(ys[n]) * width + xs[n];
            taps.weight[n] = w[n];
        }
    }
    return taps;
}

//! Taps of destination pixel (u, v) of batch b. \p homographies: (homographyBatch, 3, 3) floats.
SEMSHARE_HD BilinearTaps warpTaps(float const* homographies, WarpShape const& s, int b, int v, int u)
{
    float const* h = homographies + (s.homographyBatch == 1 ? 0 : static_cast<int64_t>(b) * 9);
    float const px = destinationCoordinate(u, s.dstWidth, s.alignCorners);
    float const py = destinationCoordinate(v, s.dstHeight, s.alignCorners);
    float qx = 0.F;
    float qy = 0.F;
    projectPoint(h, px, py, qx, qy);
    float const ix = unnormalizeCoordinate(qx, s.srcWidth, s.alignCorners);
    float const iy = unnormalizeCoordinate(qy, s.srcHeight, s.alignCorners);
    return bilinearTaps(ix, iy, s.srcHeight, s.srcWidth);
}

//! One sample of one source plane.
template <typename T>
SEMSHARE_HD float sampleBilinear(T const* plane, BilinearTaps const& taps)
{
    float value = 0.F;
    for (int n = 0; n < 4; ++n)
    {
        if (taps.weight[n] != 0.F)
        {
            value += toFloat(plane[taps.offset[n]]) * taps.weight[n];
        }
    }
    return value;
}

//! All channels of destination pixel (u, v) of batch b: computes the taps once, then one sample per channel.
template <typename T>
SEMSHARE_HD void warpPixel(T const* src, float const* homographies, WarpShape const& s, int b, int v, int u, T* dst)
{
    BilinearTaps const taps = warpTaps(homographies, s, b, v, u);
    int64_t const srcPlane = static_cast<int64_t>(s.srcHeight) * s.srcWidth;
    int64_t const dstPlane = static_cast<int64_t>(s.dstHeight) * s.dstWidth;
    T const* srcBatch = src + static_cast<int64_t>(b) * s.channels * srcPlane;
    T* dstPixel = dst + static_cast<int64_t>(b) * s.channels * dstPlane + static_cast<int64_t>(v) * s.dstWidth + u;
    for (int c = 0; c < s.channels; ++c)
    {
        dstPixel[c * dstPlane] = fromFloat<T>(sampleBilinear(srcBatch + c * srcPlane, taps));
    }
}

//! Threads per block of the warp kernel.
constexpr int kWarpThreads = 256;
//! Most blocks a launch uses; a grid-stride loop covers the rest.
constexpr int64_t kWarpMaxBlocks = int64_t{1} << 20;

//! Launch geometry of the warp kernel: a 1-D grid over every (batch, destination pixel) item, so that no batch
//! size meets a grid limit (gridDim.y and gridDim.z stop at 65535; gridDim.x, at 2^31 - 1, is never approached).
struct WarpLaunch
{
    int64_t items;  //!< batch * dstHeight * dstWidth
    int64_t blocks; //!< gridDim.x: ceil(items / kWarpThreads), at most maxBlocks (and >= 1 when items > 0)
};

SEMSHARE_HD WarpLaunch planWarpLaunch(WarpShape const& s, int64_t maxBlocks)
{
    WarpLaunch launch{};
    launch.items = static_cast<int64_t>(s.batch) * s.dstHeight * s.dstWidth;
    int64_t const needed = (launch.items + kWarpThreads - 1) / kWarpThreads;
    launch.blocks = needed < maxBlocks ? needed : maxBlocks;
    return launch;
}

//! What one thread of the warp kernel computes: items first, first + stride, ... (batch-major, so consecutive
//! threads write consecutive pixels of one plane). The kernel passes first = global thread index and
//! stride = total threads; the host build runs every (block, thread) of the planned launch.
template <typename T>
SEMSHARE_HD void warpThread(
    T const* src, float const* homographies, WarpShape const& s, int64_t items, int64_t first, int64_t stride, T* dst)
{
    int64_t const pixels = static_cast<int64_t>(s.dstHeight) * s.dstWidth;
    for (int64_t n = first; n < items; n += stride)
    {
        int64_t const b = n / pixels;
        int64_t const p = n - b * pixels;
        int const v = static_cast<int>(p / s.dstWidth);
        int const u = static_cast<int>(p - static_cast<int64_t>(v) * s.dstWidth);
        warpPixel(src, homographies, s, static_cast<int>(b), v, u, dst);
    }
}

} // namespace semshare::kernels
