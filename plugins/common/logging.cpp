#include "logging.h"

#include <cstdio>
#include <mutex>

namespace semshare::plugin
{
namespace
{
std::mutex gMutex;
nvinfer1::ILoggerFinder* gFinder{nullptr};
} // namespace

void setLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept
{
    std::lock_guard<std::mutex> lock(gMutex);
    if (gFinder == nullptr && finder != nullptr)
    {
        gFinder = finder;
    }
}

void log(Severity severity, std::string const& message) noexcept
{
    try
    {
        std::string const text = "semshare plugin: " + message;
        nvinfer1::ILogger* logger{nullptr};
        {
            std::lock_guard<std::mutex> lock(gMutex);
            if (gFinder != nullptr)
            {
                logger = gFinder->findLogger();
            }
        }
        if (logger != nullptr)
        {
            logger->log(severity, text.c_str());
        }
        else if (severity == Severity::kERROR || severity == Severity::kINTERNAL_ERROR)
        {
            std::fprintf(stderr, "[E] %s\n", text.c_str());
        }
    }
    catch (...)
    {
    }
}

} // namespace semshare::plugin
