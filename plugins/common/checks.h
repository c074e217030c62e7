// Checks that turn a violated precondition into a PluginError (a std::exception).
// PluginErrors never cross the plugin ABI: every noexcept entry point runs its body through
// semshare::plugin::guarded() (logging.h), which logs the message and returns an error value.
#pragma once

#include <stdexcept>
#include <string>

namespace semshare::plugin
{

class PluginError : public std::runtime_error
{
public:
    using std::runtime_error::runtime_error;
};

[[noreturn]] inline void fail(std::string const& message)
{
    throw PluginError(message);
}

} // namespace semshare::plugin

#define SEMSHARE_CHECK(condition, message)                                                                             \
    do                                                                                                                 \
    {                                                                                                                  \
        if (!(condition))                                                                                              \
        {                                                                                                              \
            ::semshare::plugin::fail(std::string(message));                                                            \
        }                                                                                                              \
    } while (0)
