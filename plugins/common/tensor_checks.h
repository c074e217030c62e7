// Small helpers the plugins share to inspect tensor descriptors.
#pragma once

#include "NvInferRuntime.h"

#include <string>

namespace semshare::plugin
{

inline bool isFloatOrHalf(nvinfer1::DataType type) noexcept
{
    return type == nvinfer1::DataType::kFLOAT || type == nvinfer1::DataType::kHALF;
}

inline std::string dataTypeName(nvinfer1::DataType type)
{
    switch (type)
    {
    case nvinfer1::DataType::kFLOAT: return "FLOAT";
    case nvinfer1::DataType::kHALF: return "HALF";
    case nvinfer1::DataType::kINT8: return "INT8";
    case nvinfer1::DataType::kINT32: return "INT32";
    case nvinfer1::DataType::kBOOL: return "BOOL";
    default: return "type " + std::to_string(static_cast<int>(type));
    }
}

inline std::string dimsToString(nvinfer1::Dims const& dims)
{
    std::string text = "(";
    for (int32_t i = 0; i < dims.nbDims; ++i)
    {
        text += (i > 0 ? ", " : "") + std::to_string(dims.d[i]);
    }
    return text + ")";
}

//! Two extents agree when equal or when either is still unknown (-1 at build time).
inline bool extentsAgree(int64_t a, int64_t b) noexcept
{
    return a < 0 || b < 0 || a == b;
}

} // namespace semshare::plugin
