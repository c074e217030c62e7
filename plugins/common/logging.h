// Logging through the ILoggerFinder that TensorRT hands to a dynamically loaded plugin library
// (extern "C" setLoggerFinder), and the guard that keeps exceptions from crossing the plugin ABI.
#pragma once

#include "NvInferRuntime.h"

#include <exception>
#include <string>

namespace semshare::plugin
{

using Severity = nvinfer1::ILogger::Severity;

//! Remember the finder (first non-null one wins, as in TensorRT's own plugin libraries). Thread-safe.
void setLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept;

//! Send "semshare plugin: <message>" to TensorRT's logger; to stderr (errors only) when no finder was set.
void log(Severity severity, std::string const& message) noexcept;

inline void logError(std::string const& message) noexcept
{
    log(Severity::kERROR, message);
}

inline void logWarning(std::string const& message) noexcept
{
    log(Severity::kWARNING, message);
}

//! Run body(); on any exception log "<where>: <what>" as an error and return onError instead.
template <typename Result, typename Body>
Result guarded(char const* where, Result onError, Body&& body) noexcept
{
    try
    {
        return body();
    }
    catch (std::exception const& e)
    {
        try
        {
            logError(std::string(where) + ": " + e.what());
        }
        catch (...)
        {
        }
    }
    catch (...)
    {
        try
        {
            logError(std::string(where) + ": unknown exception");
        }
        catch (...)
        {
        }
    }
    return onError;
}

} // namespace semshare::plugin
