#include "fields.h"

#include "checks.h"
#include "logging.h"

#include <algorithm>
#include <cstring>
#include <utility>

namespace semshare::plugin
{

FieldReader::FieldReader(
    std::string pluginName, nvinfer1::PluginFieldCollection const* fc, std::vector<std::string> knownFields)
    : mPluginName(std::move(pluginName))
    , mFields(fc)
{
    SEMSHARE_CHECK(fc != nullptr, mPluginName + ": no PluginFieldCollection given");
    SEMSHARE_CHECK(fc->nbFields >= 0 && (fc->nbFields == 0 || fc->fields != nullptr),
        mPluginName + ": malformed PluginFieldCollection");
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        char const* name = fc->fields[i].name;
        SEMSHARE_CHECK(name != nullptr, mPluginName + ": a plugin field has no name");
        if (std::find(knownFields.begin(), knownFields.end(), std::string(name)) == knownFields.end())
        {
            logWarning(mPluginName + ": ignoring unknown field '" + name + "'");
        }
        for (int32_t j = 0; j < i; ++j)
        {
            SEMSHARE_CHECK(std::strcmp(fc->fields[j].name, name) != 0,
                mPluginName + ": field '" + name + "' is given more than once");
        }
    }
}

nvinfer1::PluginField const* FieldReader::find(
    char const* name, nvinfer1::PluginFieldType type, char const* typeName) const
{
    for (int32_t i = 0; i < mFields->nbFields; ++i)
    {
        nvinfer1::PluginField const& field = mFields->fields[i];
        if (std::strcmp(field.name, name) != 0)
        {
            continue;
        }
        SEMSHARE_CHECK(field.type == type,
            mPluginName + ": field '" + name + "' must be " + typeName + " (PluginFieldType "
                + std::to_string(static_cast<int32_t>(type)) + "), got PluginFieldType "
                + std::to_string(static_cast<int32_t>(field.type)));
        SEMSHARE_CHECK(field.data != nullptr && (type == nvinfer1::PluginFieldType::kCHAR || field.length >= 1),
            mPluginName + ": field '" + name + "' has no value");
        return &field;
    }
    return nullptr;
}

int32_t FieldReader::getInt(char const* name, std::optional<int32_t> fallback) const
{
    nvinfer1::PluginField const* field = find(name, nvinfer1::PluginFieldType::kINT32, "an INT (kINT32)");
    if (field == nullptr)
    {
        SEMSHARE_CHECK(fallback.has_value(), mPluginName + ": required field '" + name + "' is missing");
        return *fallback;
    }
    SEMSHARE_CHECK(field->length == 1,
        mPluginName + ": field '" + name + "' must hold one value, got " + std::to_string(field->length));
    return *static_cast<int32_t const*>(field->data);
}

float FieldReader::getFloat(char const* name, std::optional<float> fallback) const
{
    nvinfer1::PluginField const* field = find(name, nvinfer1::PluginFieldType::kFLOAT32, "a FLOAT (kFLOAT32)");
    if (field == nullptr)
    {
        SEMSHARE_CHECK(fallback.has_value(), mPluginName + ": required field '" + name + "' is missing");
        return *fallback;
    }
    SEMSHARE_CHECK(field->length == 1,
        mPluginName + ": field '" + name + "' must hold one value, got " + std::to_string(field->length));
    return *static_cast<float const*>(field->data);
}

std::string FieldReader::getString(char const* name, std::optional<std::string> fallback) const
{
    nvinfer1::PluginField const* field = find(name, nvinfer1::PluginFieldType::kCHAR, "a STRING (kCHAR)");
    if (field == nullptr)
    {
        SEMSHARE_CHECK(fallback.has_value(), mPluginName + ": required field '" + name + "' is missing");
        return *fallback;
    }
    SEMSHARE_CHECK(field->length >= 0, mPluginName + ": field '" + name + "' has a negative length");
    char const* text = static_cast<char const*>(field->data);
    size_t const length = static_cast<size_t>(field->length);
    return std::string(text, std::find(text, text + length, '\0'));
}

void FieldWriter::clear()
{
    mNames.clear();
    mData.clear();
    mTypes.clear();
    mLengths.clear();
    mFields.clear();
    mCollection = nvinfer1::PluginFieldCollection{};
}

void FieldWriter::addInt(char const* name, int32_t value)
{
    mNames.emplace_back(name);
    std::vector<char> bytes(sizeof(int32_t));
    std::memcpy(bytes.data(), &value, sizeof(int32_t));
    mData.push_back(std::move(bytes));
    mTypes.push_back(nvinfer1::PluginFieldType::kINT32);
    mLengths.push_back(1);
}

void FieldWriter::addString(char const* name, std::string const& value)
{
    mNames.emplace_back(name);
    std::vector<char> bytes(value.begin(), value.end());
    bytes.push_back('\0');
    mData.push_back(std::move(bytes));
    mTypes.push_back(nvinfer1::PluginFieldType::kCHAR);
    mLengths.push_back(static_cast<int32_t>(value.size() + 1));
}

nvinfer1::PluginFieldCollection const* FieldWriter::collection()
{
    mFields.clear();
    for (size_t i = 0; i < mNames.size(); ++i)
    {
        mFields.emplace_back(mNames[i].c_str(), mData[i].data(), mTypes[i], mLengths[i]);
    }
    mCollection.nbFields = static_cast<int32_t>(mFields.size());
    mCollection.fields = mFields.data();
    return &mCollection;
}

FieldNames::FieldNames(std::vector<std::pair<std::string, nvinfer1::PluginFieldType>> fields)
{
    for (auto const& field : fields)
    {
        mNames.push_back(field.first);
    }
    for (size_t i = 0; i < fields.size(); ++i)
    {
        mFields.emplace_back(mNames[i].c_str(), nullptr, fields[i].second, 1);
    }
    mCollection.nbFields = static_cast<int32_t>(mFields.size());
    mCollection.fields = mFields.data();
}

} // namespace semshare::plugin
