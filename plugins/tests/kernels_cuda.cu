// The CUDA launchers as a plain shared library (no TensorRT), loaded with ctypes by benchmarks/plugins_gpu.py.
// dtype: 0 = float32, 1 = float16. Pointers are device pointers; stream is a cudaStream_t (e.g. torch's).
// Functions return the cudaError_t of the launch.
#include "homography_warp/homography_warp_kernel.h"
#include "spatial_correlation/spatial_correlation_kernel.h"

using namespace semshare::kernels;

extern "C"
{

int semshare_cuda_correlation(int dtype, void const* x1, void const* x2, void* out, int b, int c, int h, int w, int p,
    int d, int normalize, void* stream)
{
    CorrelationShape const s{b, c, h, w, p, d, normalize != 0};
    auto const st = static_cast<cudaStream_t>(stream);
    if (dtype != 0 && dtype != 1)
        return cudaErrorInvalidValue;
    static int sMultiProcessors = 0; // queried once, as the plugin does (one device per process here)
    if (sMultiProcessors == 0)
    {
        cudaError_t const status = currentMultiProcessorCount(sMultiProcessors);
        if (status != cudaSuccess)
            return status;
    }
    if (dtype == 0)
        return launchSpatialCorrelation(static_cast<float const*>(x1), static_cast<float const*>(x2),
            static_cast<float*>(out), s, sMultiProcessors, st);
    return launchSpatialCorrelation(static_cast<__half const*>(x1), static_cast<__half const*>(x2),
        static_cast<__half*>(out), s, sMultiProcessors, st);
}

int semshare_cuda_homography_warp(int dtype, void const* src, float const* srcFromDst, void* dst, int b, int c, int hs,
    int ws, int hd, int wd, int hb, int alignCorners, void* stream)
{
    WarpShape const s{b, c, hs, ws, hd, wd, hb, alignCorners != 0};
    auto const st = static_cast<cudaStream_t>(stream);
    if (dtype == 0)
        return launchHomographyWarp(static_cast<float const*>(src), srcFromDst, static_cast<float*>(dst), s, st);
    if (dtype == 1)
        return launchHomographyWarp(static_cast<__half const*>(src), srcFromDst, static_cast<__half*>(dst), s, st);
    return cudaErrorInvalidValue;
}

//! Theoretical DRAM bandwidth of the current device in GB/s (0 when the driver does not report it).
double semshare_cuda_peak_bandwidth_gbs()
{
    int device = 0;
    int clockKHz = 0;
    int busBits = 0;
    if (cudaGetDevice(&device) != cudaSuccess
        || cudaDeviceGetAttribute(&clockKHz, cudaDevAttrMemoryClockRate, device) != cudaSuccess
        || cudaDeviceGetAttribute(&busBits, cudaDevAttrGlobalMemoryBusWidth, device) != cudaSuccess)
    {
        cudaGetLastError();
        return 0.0;
    }
    return 2.0 * clockKHz * 1e3 * (busBits / 8.0) / 1e9; // double data rate
}

} // extern "C"
