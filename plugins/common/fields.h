// Reading and writing PluginFieldCollections.
//
// The ONNX parser passes an ONNX INT attribute as kINT32 (length 1), FLOAT as kFLOAT32 and STRING as kCHAR
// (length = byte count, NUL-terminated or not). A field the creator lists but the node lacks is simply
// absent, so every optional field has a default; a required field without a value, a field of the wrong
// type or an empty field is a PluginError naming the plugin, the field and what was expected.
#pragma once

#include "NvInferRuntime.h"

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace semshare::plugin
{

class FieldReader
{
public:
    //! \param knownFields the names the creator lists; any other field is logged as a warning and ignored.
    FieldReader(std::string pluginName, nvinfer1::PluginFieldCollection const* fc, std::vector<std::string> knownFields);

    //! kINT32 field; \p fallback is used when the field is absent (std::nullopt: the field is required).
    int32_t getInt(char const* name, std::optional<int32_t> fallback) const;
    //! kFLOAT32 field.
    float getFloat(char const* name, std::optional<float> fallback) const;
    //! kCHAR field, read up to its length or its first NUL.
    std::string getString(char const* name, std::optional<std::string> fallback) const;

private:
    nvinfer1::PluginField const* find(char const* name, nvinfer1::PluginFieldType type, char const* typeName) const;

    std::string mPluginName;
    nvinfer1::PluginFieldCollection const* mFields;
};

//! Owns the values behind a PluginFieldCollection (what getFieldsToSerialize returns).
class FieldWriter
{
public:
    FieldWriter() = default;
    FieldWriter(FieldWriter const&) = delete;
    FieldWriter& operator=(FieldWriter const&) = delete;

    void clear();
    void addInt(char const* name, int32_t value);
    void addString(char const* name, std::string const& value);
    //! Valid until the next clear()/add*().
    nvinfer1::PluginFieldCollection const* collection();

private:
    std::vector<std::string> mNames;
    std::vector<std::vector<char>> mData;
    std::vector<nvinfer1::PluginFieldType> mTypes;
    std::vector<int32_t> mLengths;
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mCollection{};
};

//! Field list for getFieldNames(): names with their types and data = nullptr.
class FieldNames
{
public:
    explicit FieldNames(std::vector<std::pair<std::string, nvinfer1::PluginFieldType>> fields);
    FieldNames(FieldNames const&) = delete;
    FieldNames& operator=(FieldNames const&) = delete;

    nvinfer1::PluginFieldCollection const* collection() const noexcept
    {
        return &mCollection;
    }
    std::vector<std::string> const& names() const noexcept
    {
        return mNames;
    }

private:
    std::vector<std::string> mNames;
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mCollection{};
};

} // namespace semshare::plugin
