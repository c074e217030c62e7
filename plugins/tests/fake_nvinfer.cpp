// A stand-in libnvinfer.so.<major> for the CPU tests of the plugin library's load-time registration
// (plugins/common/library.cpp; tests/test_plugins.py). Built with the real soname, loaded RTLD_LOCAL as the Python
// tensorrt module loads libnvinfer. It is NOT TensorRT: it exports getPluginRegistry() returning a registry that
// records every registerCreator / deregisterCreator / loadLibrary call, refuses a second creator with the same
// (name, version, namespace) like TensorRT's, and implements loadLibrary as include/NvInferRuntimeCommon.h
// documents it: dlopen the library, setLoggerFinder, getCreators, then fail with nullptr "if any of the plugins
// are already registered", else register them all under the returned handle.
//
// Test-only C entry points: semshare_fake_load_library(path) (the registry's loadLibrary) and
// semshare_fake_report() (a JSON object: "events" in call order and the "registered" creators).
#include "NvInferRuntime.h"

#include <dlfcn.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

using namespace nvinfer1;

#define FAKE_EXPORT extern "C" __attribute__((visibility("default")))

namespace
{

struct Entry
{
    std::string name;
    std::string version;
    std::string nameSpace;
    IPluginCreatorInterface* creator;
    void* library; //!< loadLibrary handle that owns it; null when registered directly
};

struct Names
{
    std::string name;
    std::string version;
    std::string nameSpace;
};

Names namesOf(IPluginCreatorInterface const& creator)
{
    InterfaceInfo const info = creator.getInterfaceInfo();
    if (info.kind == nullptr || std::strcmp(info.kind, "PLUGIN CREATOR_V3ONE") != 0)
    {
        return {"<not a V3One creator>", "", ""};
    }
    auto const& v3 = static_cast<IPluginCreatorV3One const&>(creator);
    return {v3.getPluginName(), v3.getPluginVersion(), v3.getPluginNamespace()};
}

std::string quote(std::string const& text)
{
    return "\"" + text + "\""; // the names involved hold no characters that need escaping
}

class FakeLogger : public ILogger
{
public:
    void log(Severity, char const*) noexcept override {}
};

class FakeFinder : public ILoggerFinder
{
public:
    ILogger* findLogger() override
    {
        return &logger;
    }
    FakeLogger logger;
};

class FakeRegistry : public IPluginRegistry
{
public:
    // ---- what the plugin library and loadLibrary use ------------------------------------------------------------
    bool registerCreator(IPluginCreatorInterface& creator, AsciiChar const* const pluginNamespace) noexcept override
    {
        std::lock_guard<std::mutex> lock(mMutex);
        return add(creator, pluginNamespace ? pluginNamespace : "", nullptr, "registerCreator");
    }

    bool deregisterCreator(IPluginCreatorInterface const& creator) noexcept override
    {
        std::lock_guard<std::mutex> lock(mMutex);
        Names const names = namesOf(creator);
        bool found = false;
        for (auto it = mEntries.begin(); it != mEntries.end(); ++it)
        {
            if (it->creator == &creator)
            {
                mEntries.erase(it);
                found = true;
                break;
            }
        }
        event("deregisterCreator", names.name, names.nameSpace, found);
        return found;
    }

    PluginLibraryHandle loadLibrary(AsciiChar const* pluginPath) noexcept override
    {
        InLoadLibrary const scope(mInLoadLibrary);
        void* handle = dlopen(pluginPath, RTLD_LAZY | RTLD_LOCAL);
        if (handle == nullptr)
        {
            event("loadLibrary", pluginPath, dlerror(), false);
            return nullptr;
        }
        using GetCreators = IPluginCreatorInterface* const* (*) (int32_t&);
        using SetLoggerFinder = void (*)(ILoggerFinder*);
        auto setLoggerFinder = reinterpret_cast<SetLoggerFinder>(dlsym(handle, "setLoggerFinder"));
        auto getCreators = reinterpret_cast<GetCreators>(dlsym(handle, "getCreators"));
        if (getCreators == nullptr)
        {
            event("loadLibrary", pluginPath, "no getCreators", false);
            dlclose(handle);
            return nullptr;
        }
        if (setLoggerFinder != nullptr)
        {
            static FakeFinder finder;
            setLoggerFinder(&finder);
        }
        int32_t count = 0;
        IPluginCreatorInterface* const* list = getCreators(count);
        std::lock_guard<std::mutex> lock(mMutex);
        for (int32_t i = 0; i < count; ++i)
        {
            Names const names = namesOf(*list[i]);
            if (find(names.name, names.version, names.nameSpace) != nullptr)
            {
                event("loadLibrary", pluginPath, "creator " + names.name + " exists already", false);
                dlclose(handle);
                return nullptr;
            }
        }
        for (int32_t i = 0; i < count; ++i)
        {
            add(*list[i], namesOf(*list[i]).nameSpace, handle, "loadLibrary.registerCreator");
        }
        event("loadLibrary", pluginPath, "", true);
        return handle;
    }

    void deregisterLibrary(PluginLibraryHandle handle) noexcept override
    {
        std::lock_guard<std::mutex> lock(mMutex);
        std::vector<Entry> kept;
        for (auto const& e : mEntries)
        {
            if (e.library != handle)
            {
                kept.push_back(e);
            }
        }
        mEntries.swap(kept);
        event("deregisterLibrary", "", "", true);
    }

    IPluginCreatorInterface* getCreator(AsciiChar const* const pluginName, AsciiChar const* const pluginVersion,
        AsciiChar const* const pluginNamespace) noexcept override
    {
        std::lock_guard<std::mutex> lock(mMutex);
        Entry const* e = find(pluginName, pluginVersion, pluginNamespace ? pluginNamespace : "");
        return e ? e->creator : nullptr;
    }

    IPluginCreatorInterface* const* getAllCreators(int32_t* const numCreators) const noexcept override
    {
        std::lock_guard<std::mutex> lock(mMutex);
        mAll.clear();
        for (auto const& e : mEntries)
        {
            mAll.push_back(e.creator);
        }
        *numCreators = static_cast<int32_t>(mAll.size());
        return mAll.empty() ? nullptr : mAll.data();
    }

    // Not `override`: TensorRT 10.3's registry has no getAllCreatorsRecursive; later ones declare it pure virtual.
    IPluginCreatorInterface* const* getAllCreatorsRecursive(int32_t* const numCreators) noexcept
    {
        return getAllCreators(numCreators);
    }

    std::string report() const
    {
        std::lock_guard<std::mutex> lock(mMutex);
        std::ostringstream out;
        out << "{\"events\": [";
        for (size_t i = 0; i < mEvents.size(); ++i)
        {
            out << (i ? ", " : "") << mEvents[i];
        }
        out << "], \"registered\": [";
        for (size_t i = 0; i < mEntries.size(); ++i)
        {
            Entry const& e = mEntries[i];
            out << (i ? ", " : "") << "{\"name\": " << quote(e.name) << ", \"version\": " << quote(e.version)
                << ", \"namespace\": " << quote(e.nameSpace) << ", \"by_load_library\": "
                << (e.library ? "true" : "false") << "}";
        }
        out << "]}";
        return out.str();
    }

    // ---- the rest of the interface: unused by the plugin library --------------------------------------------------
#if NV_TENSORRT_MAJOR < 11 // the deprecated IPluginCreator (V2) overloads, removed in TensorRT 11
    bool registerCreator(IPluginCreator&, AsciiChar const* const) noexcept override
    {
        return false;
    }
    IPluginCreator* const* getPluginCreatorList(int32_t* const numCreators) const noexcept override
    {
        *numCreators = 0;
        return nullptr;
    }
    IPluginCreator* getPluginCreator(AsciiChar const* const, AsciiChar const* const, AsciiChar const* const) noexcept override
    {
        return nullptr;
    }
    bool deregisterCreator(IPluginCreator const&) noexcept override
    {
        return false;
    }
#endif
    void setErrorRecorder(IErrorRecorder* const) noexcept override {}
    IErrorRecorder* getErrorRecorder() const noexcept override
    {
        return nullptr;
    }
    bool isParentSearchEnabled() const override
    {
        return false;
    }
    void setParentSearchEnabled(bool const) override {}
    IPluginResource* acquirePluginResource(AsciiChar const*, IPluginResource*) noexcept override
    {
        return nullptr;
    }
    int32_t releasePluginResource(AsciiChar const*) noexcept override
    {
        return -1;
    }

private:
    Entry const* find(std::string const& name, std::string const& version, std::string const& nameSpace) const
    {
        for (auto const& e : mEntries)
        {
            if (e.name == name && e.version == version && e.nameSpace == nameSpace)
            {
                return &e;
            }
        }
        return nullptr;
    }

    bool add(IPluginCreatorInterface& creator, std::string const& nameSpace, void* library, char const* call)
    {
        Names const names = namesOf(creator);
        bool const ok = find(names.name, names.version, nameSpace) == nullptr;
        if (ok)
        {
            mEntries.push_back({names.name, names.version, nameSpace, &creator, library});
        }
        event(call, names.name, nameSpace, ok);
        return ok;
    }

    void event(std::string const& call, std::string const& what, std::string const& detail, bool ok)
    {
        mEvents.push_back("{\"call\": " + quote(call) + ", \"name\": " + quote(what) + ", \"detail\": "
            + quote(detail) + ", \"ok\": " + (ok ? "true" : "false") + ", \"in_load_library\": "
            + (mInLoadLibrary ? "true" : "false") + "}");
    }

    //! Marks the calls made while loadLibrary runs (the plugin library's constructor and getCreators included).
    struct InLoadLibrary
    {
        explicit InLoadLibrary(std::atomic<bool>& flag)
            : mFlag(flag)
        {
            mFlag = true;
        }
        ~InLoadLibrary()
        {
            mFlag = false;
        }
        std::atomic<bool>& mFlag;
    };

    mutable std::mutex mMutex;
    std::atomic<bool> mInLoadLibrary{false};
    std::vector<Entry> mEntries;
    std::vector<std::string> mEvents;
    mutable std::vector<IPluginCreatorInterface*> mAll;
};

FakeRegistry& registry()
{
    static FakeRegistry instance;
    return instance;
}

} // namespace

FAKE_EXPORT IPluginRegistry* getPluginRegistry() noexcept
{
    return &registry();
}

FAKE_EXPORT void* semshare_fake_load_library(char const* path)
{
    return registry().loadLibrary(path);
}

FAKE_EXPORT char const* semshare_fake_report()
{
    static std::string text;
    text = registry().report();
    return text.c_str();
}
