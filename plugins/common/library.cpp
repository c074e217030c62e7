// The library's two C entry points, as IPluginRegistry::loadLibrary (and trtexec --dynamicPlugins) expect them.
// The creators are NOT also self-registered (no REGISTER_TENSORRT_PLUGIN): loadLibrary would then fail.
#include "NvInferRuntime.h"
#include "common/logging.h"
#include "homography_warp/homography_warp_plugin.h"
#include "spatial_correlation/spatial_correlation_plugin.h"

// The library is built with hidden visibility; only these two symbols are exported. (TENSORRTAPI exports only
// when TENSORRT_BUILD_LIB is defined, i.e. inside TensorRT itself.)
#if defined(_MSC_VER)
#define SEMSHARE_PLUGIN_EXPORT __declspec(dllexport)
#else
#define SEMSHARE_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif

extern "C" SEMSHARE_PLUGIN_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    nbCreators = 0;
    try
    {
        // Function-local statics, built on first use (their constructors only fill small vectors).
        static semshare::plugin::SpatialCorrelationCreator sSpatialCorrelation;
        static semshare::plugin::HomographyWarpCreator sHomographyWarp;
        static nvinfer1::IPluginCreatorInterface* const kCreators[] = {&sSpatialCorrelation, &sHomographyWarp};
        nbCreators = 2;
        return kCreators;
    }
    catch (...)
    {
        semshare::plugin::logError("getCreators: could not construct the plugin creators");
    }
    return nullptr;
}

extern "C" SEMSHARE_PLUGIN_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    semshare::plugin::setLoggerFinder(finder);
}
