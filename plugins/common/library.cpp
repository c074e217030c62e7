// The library's entry points, and how its creators reach a TensorRT plugin registry by every loading route.
//
// Routes (README.md, "Loading the library"):
//   A. IPluginRegistry::loadLibrary (trt.get_plugin_registry().load_library, trtexec --dynamicPlugins, an engine's
//      serialized plugin library): TensorRT dlopens the library, calls setLoggerFinder and getCreators, and
//      registers the creators itself, under the library's handle. The header documents that the call "will fail
//      and return nullptr if any of the plugins are already registered" (include/NvInferRuntimeCommon.h), and
//      TensorRT says so at runtime: "Cannot register the library as plugin creator of <name> exists already"
//      (laugh12321/TensorRT-YOLO#100, a library loaded by --staticPlugins and then again by the engine).
//   B. A plain dlopen with no further call: `polygraphy ... --plugins lib.so` (ctypes.CDLL, Polygraphy
//      backend/trt/loader.py LoadPlugins) and `trtexec --staticPlugins lib.so` (samples/common/common.h
//      DynamicLibrary). Nothing calls getCreators, so the library must register itself while it is loaded.
//
// Scheme ("register at load unless TensorRT itself is loading us; yield to loadLibrary"):
//   - The load-time constructor (selfRegister below) looks for a TensorRT already in the process, without linking
//     libnvinfer: dlopen("libnvinfer.so.<major we were compiled against>", RTLD_NOLOAD), then dlsym
//     "getPluginRegistry" on that handle. The Python tensorrt module loads libnvinfer RTLD_LOCAL, so
//     dlsym(RTLD_DEFAULT, ...) would not see it; RTLD_NOLOAD finds a loaded object by its soname whatever its
//     path and scope. Not found: nothing happens (getCreators is then the only way in).
//   - Found, the constructor first asks who is loading the library: if a frame of the current call stack lies in
//     that libnvinfer, the dlopen comes from TensorRT itself (loadLibrary, or an engine's serialized plugin
//     library), which calls getCreators and registers next, so the constructor registers nothing. Otherwise
//     (ctypes, trtexec's own dlopen) it registers the creators (namespace "semshare") and remembers the registry.
//   - getCreators first takes back anything the constructor registered (deregisterCreator), then returns the
//     creators, so loadLibrary's own registerCreator calls find them absent. Every order ends with each creator
//     registered exactly once, and loadLibrary returns a non-null handle:
//       * loadLibrary of a fresh library: the constructor sees libnvinfer on the stack and stays out;
//         loadLibrary registers (owned by its handle, so deregisterLibrary removes them). Should the stack walk
//         miss libnvinfer, the constructor registers and getCreators takes it back: the same end state.
//       * ctypes / --staticPlugins first, loadLibrary later: dlopen returns the loaded library (no second
//         constructor); getCreators takes back the self-registration; loadLibrary registers.
//       * loadLibrary first, ctypes later: ctypes' dlopen runs no constructor; nothing changes.
//       * loadLibrary twice: the second sees registered creators and returns null, as it would for any library
//         (semshare.engine.plugins.load_plugins checks the registry first and does not call it again).
//     getCreators is for a caller that registers what it returns (the loadLibrary contract); a caller that only
//     inspects it after a ctypes load leaves the creators unregistered.
//   - Registry calls made while loadLibrary runs: none for a fresh library; for "ctypes first, loadLibrary
//     later", getCreators' deregisterCreator calls happen inside loadLibrary. TensorRT's registry documents
//     registerCreator as mutex-synchronised but not whether loadLibrary holds that mutex around getCreators;
//     without the yield that order fails for certain ("exists already", above), with it it works unless it does.
//   - Only the soname of the TensorRT major this library was compiled for is probed. IPluginRegistry's vtable
//     differs between majors (10.x still has the deprecated IPluginCreator overloads in front of
//     registerCreator(IPluginCreatorInterface&), 11.x removed them), so registering into another major's
//     registry would call the wrong virtual function. A process holding only another major gets a one-line
//     warning on stderr and no self-registration (loadLibrary, which only calls getCreators, still works).
//   - A statically linked TensorRT (no libnvinfer.so.N in the process) is not found: use getCreators there.
//   - The library is linked with -z nodelete (CMakeLists.txt): trtexec dlcloses its --staticPlugins libraries
//     while the registry still holds their creators; with nodelete the creators stay valid until exit. Nothing
//     is deregistered at exit (the registry may already be gone).
//   - Not yet checked against a real TensorRT (none on the development machine): the CPU harness
//     (tests/test_plugins.py) drives a stand-in libnvinfer.so.10 (plugins/tests/fake_nvinfer.cpp) whose
//     loadLibrary follows the header's contract, in every order above.
#include "NvInferRuntime.h"
#include "NvInferVersion.h"
#include "common/logging.h"
#include "common/plugin_names.h"
#include "homography_warp/homography_warp_plugin.h"
#include "spatial_correlation/spatial_correlation_plugin.h"

#include <dlfcn.h>
#include <execinfo.h>

#include <cstdio>
#include <mutex>
#include <string>

// The library is built with hidden visibility; only these two symbols are exported. (TENSORRTAPI exports only
// when TENSORRT_BUILD_LIB is defined, i.e. inside TensorRT itself.)
#define SEMSHARE_PLUGIN_EXPORT __attribute__((visibility("default")))

namespace
{
using nvinfer1::IPluginCreatorInterface;
using nvinfer1::IPluginRegistry;

constexpr int32_t kNbCreators = 2;

//! The creators, built on first use (their constructors only fill small vectors).
IPluginCreatorInterface* const* creators()
{
    static semshare::plugin::SpatialCorrelationCreator sSpatialCorrelation;
    static semshare::plugin::HomographyWarpCreator sHomographyWarp;
    static IPluginCreatorInterface* const kCreators[kNbCreators] = {&sSpatialCorrelation, &sHomographyWarp};
    return kCreators;
}

std::mutex gMutex;
IPluginRegistry* gSelfRegistry{nullptr}; //!< where selfRegister put the creators (null: nowhere, or taken back)
bool gSelfRegistered[kNbCreators]{};

std::string nvinferSoname(int major)
{
    return "libnvinfer.so." + std::to_string(major);
}

//! The TensorRT (of our major) this process already holds: its plugin registry and the base address of its
//! libnvinfer; both null when there is none. Never loads one.
struct ProcessTensorRT
{
    IPluginRegistry* registry{nullptr};
    void* base{nullptr};
};

ProcessTensorRT processTensorRT()
{
    void* handle = dlopen(nvinferSoname(NV_TENSORRT_MAJOR).c_str(), RTLD_LAZY | RTLD_NOLOAD);
    if (handle == nullptr)
    {
        for (int other : {10, 11, 12})
        {
            void* foreign = other == NV_TENSORRT_MAJOR
                ? nullptr
                : dlopen(nvinferSoname(other).c_str(), RTLD_LAZY | RTLD_NOLOAD);
            if (foreign != nullptr)
            {
                std::fprintf(stderr,
                    "[W] semshare plugin: this library is built for TensorRT %d but the process holds %s; its creators "
                    "are not registered at load time (load it with IPluginRegistry::loadLibrary, or rebuild it "
                    "against this TensorRT)\n",
                    NV_TENSORRT_MAJOR, nvinferSoname(other).c_str());
                dlclose(foreign);
            }
        }
        return {};
    }
    using GetPluginRegistry = IPluginRegistry* (*) ();
    auto getRegistry = reinterpret_cast<GetPluginRegistry>(dlsym(handle, "getPluginRegistry"));
    Dl_info info{};
    ProcessTensorRT trt;
    if (getRegistry != nullptr && dladdr(reinterpret_cast<void*>(getRegistry), &info) != 0)
    {
        trt.registry = getRegistry();
        trt.base = info.dli_fbase;
    }
    if (trt.registry == nullptr)
    {
        dlclose(handle);
        return {};
    }
    // The handle (one more reference on a library the process holds anyway) is kept, and with it the registry
    // that will point at our creators.
    return trt;
}

//! Whether a frame of the current call stack lies in the object loaded at \p base (libnvinfer): the dlopen
//! running our constructor then comes from TensorRT itself.
bool calledFrom(void* base)
{
    void* frames[128];
    int const depth = backtrace(frames, 128);
    for (int i = 0; i < depth; ++i)
    {
        Dl_info info{};
        if (dladdr(frames[i], &info) != 0 && info.dli_fbase == base)
        {
            return true;
        }
    }
    return false;
}

//! Route B: register the creators when the process already holds TensorRT and is not TensorRT loading us.
__attribute__((constructor)) void selfRegister() noexcept
{
    try
    {
        std::lock_guard<std::mutex> lock(gMutex);
        ProcessTensorRT const trt = processTensorRT();
        if (trt.registry == nullptr || calledFrom(trt.base))
        {
            return;
        }
        IPluginCreatorInterface* const* list = creators();
        bool any = false;
        for (int32_t i = 0; i < kNbCreators; ++i)
        {
            gSelfRegistered[i] = trt.registry->registerCreator(*list[i], semshare::plugin::kPluginNamespace);
            any = any || gSelfRegistered[i];
        }
        gSelfRegistry = any ? trt.registry : nullptr;
    }
    catch (...)
    {
        semshare::plugin::logError("could not register the plugin creators at load time");
    }
}

//! Route A: take back what selfRegister registered, so that loadLibrary's registration goes through.
void yieldSelfRegistration()
{
    std::lock_guard<std::mutex> lock(gMutex);
    if (gSelfRegistry == nullptr)
    {
        return;
    }
    IPluginCreatorInterface* const* list = creators();
    for (int32_t i = 0; i < kNbCreators; ++i)
    {
        if (gSelfRegistered[i])
        {
            gSelfRegistry->deregisterCreator(*list[i]);
            gSelfRegistered[i] = false;
        }
    }
    gSelfRegistry = nullptr;
}

} // namespace

extern "C" SEMSHARE_PLUGIN_EXPORT IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    nbCreators = 0;
    try
    {
        IPluginCreatorInterface* const* list = creators();
        yieldSelfRegistration();
        nbCreators = kNbCreators;
        return list;
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
