// Names shared by every semshare plugin; must equal semshare/ops/contracts.py.
#pragma once

namespace semshare::plugin
{
constexpr char const* kPluginVersion = "1";
constexpr char const* kPluginNamespace = "semshare";
} // namespace semshare::plugin
